// Package version names the build. The benchmark's one-line change edits Build.
package version

// Name is the program's name.
const Name = "kvd"

// Build is the build's label; `cargo xtask bench` rewrites this line for its one-line change.
const Build = "bench-0"

// Banner is what the server prints when it starts.
func Banner() string {
	return Name + " " + Build
}
