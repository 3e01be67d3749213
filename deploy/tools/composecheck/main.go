// composecheck loads a compose file with compose-go, the loader `docker compose` itself uses,
// and fails on anything `docker compose config` would refuse. It runs offline: our machines
// have the Docker client but no compose plugin and no engine.
//
// Usage: go run ./deploy/tools/composecheck docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck <compose-file>")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(
		[]string{os.Args[1]},
		cli.WithName("alpha"),
		cli.WithProfiles([]string{"workers"}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("ok: %d services\n", len(project.Services))
}
