// Package greeting builds the message the server and the CLI print.
package greeting

import "fmt"

// For returns the greeting for name.
func For(name string) string {
	return fmt.Sprintf("Hello, %s! (Go, CGO_ENABLED=0, on scratch)", name)
}
