// grafana-schema-check: decodes Grafana dashboard JSON files with the strict
// decoder of Grafana's Foundation SDK and runs its Validate(), both generated
// from Grafana's own dashboard schema. Prints every problem, one per line,
// prefixed with the file; exits 1 if any file has one.
//
// The checking is the SDK's; this file only feeds it files.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	// Panel options and queries decode through their plugin's own types.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			failed = true
			fmt.Printf("%s: %v\n", path, err)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var board dashboard.Dashboard
	if err := problems(board.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	return problems(board.Validate())
}

// The SDK returns an empty cog.BuildErrors, not nil, when all is well.
func problems(err error) error {
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}
