// Package version holds the build version of Pico, set at link time with
// -ldflags "-X github.com/pico-proxy/pico/internal/version.Version=v1.2.3".
package version

// Version is the release version; "dev" for untagged builds.
var Version = "dev"
