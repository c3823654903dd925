package station

import (
	"context"
	"fmt"
	"strings"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
)

// openDMS connects to the device-management service named by url:
// "sqlite:FILE" is an embedded DMS in this process, on a SQLite file.
func openDMS(ctx context.Context, url string) (jobs.Upstream, func(), error) {
	scheme, rest, _ := strings.Cut(url, ":")
	switch scheme {
	case "sqlite":
		if rest == "" {
			return nil, nil, usageErr("--dms sqlite: needs a file, as in sqlite:dms.db")
		}
		store, err := dms.OpenSQLite(ctx, rest)
		if err != nil {
			return nil, nil, fmt.Errorf("open embedded DMS: %w", err)
		}
		return &dms.Local{Service: &dms.Service{Store: store}}, func() { store.Close() }, nil
	}
	return nil, nil, usageErr("--dms %q: use sqlite:FILE for an embedded DMS", url)
}
