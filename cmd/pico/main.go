// Command pico is Pico's single binary: the server node, the upstream agent,
// the TCP forwarder, the admin API client and the Kubernetes init-container
// bootstrap. Each subcommand lives in its own file of this package as a
// function with the signature of command.run.
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one `pico <name>` subcommand.
type command struct {
	name    string
	summary string
	// run executes the subcommand with the arguments that follow its name
	// and returns the process exit code: 0 success, 1 runtime or
	// configuration error, 2 usage error.
	run func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"server", "run a server node", runServer},
		{"agent", "register endpoints and forward their traffic to local services", runAgent},
		{"forward", "forward a local TCP port to an endpoint through the proxy port", runForward},
		{"status", "query a server's admin API (cluster nodes, upstream endpoints)", runStatus},
		{"bootstrap", "init container: discover peers and write server.yaml", runBootstrap},
		{"selftest", "check a running cluster: membership on every member and a request through the proxy", runSelftest},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "pico: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pico <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'pico <command> --help' for the flags of a command.")
}
