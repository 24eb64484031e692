// The 2015 "compilation images" note: one file builds a build image and a run image, and the
// run image takes only the binary from the build.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	who := "run"
	if len(os.Args) > 1 {
		who = os.Args[1]
	}
	fmt.Printf("compiled once, shipped twice: hello from the %s image (%s)\n", who, runtime.Version())
}
