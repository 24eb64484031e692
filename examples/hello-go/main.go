// The 2017 builder-pattern article's case: a static Go binary on scratch.
package main

import (
	"fmt"
	"os"

	"example.com/hello/greeting"
)

func main() {
	name := "world"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Println(greeting.For(name))
}
