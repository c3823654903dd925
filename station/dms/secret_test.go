package dms

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

// TestSecretsNotInDatabase issues tokens, runs them through work orders
// and claims, and looks for the secrets in what the database stored (the
// raw bytes of SQLite's file and WAL; every row of PostgreSQL's tables),
// while open and after closing.
func TestSecretsNotInDatabase(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		svc, _ := newTestService(t, b)
		bundle, files := testBundle("1.0")
		res, err := svc.Seed(ctx, SeedSpec{
			Customer: Customer{ID: "ACME", Name: "Acme"},
			Product:  jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageProduction},
			Bundle:   bundle, Files: files,
			WorkOrder: WorkOrderSpec{ID: "WO-1", Quantity: 5},
		})
		if err != nil {
			t.Fatalf("Seed = %v", err)
		}
		secrets := []jobs.Secret{res.Token}
		otherID, other := addToken(t, svc, "THERMO", 3, time.Time{})
		secrets = append(secrets, other)
		addWorkOrder(t, svc, "WO-2", "THERMO", otherID)
		l := &Local{Service: svc}
		for n, wo := range []struct {
			id    string
			token jobs.Secret
		}{{"WO-1", res.Token}, {"WO-2", other}} {
			if _, err := l.Activate(ctx, jobs.ActivateRequest{WorkOrder: wo.id, Product: "THERMO", HardwareID: hwID(n), FirmwareVersion: "1.0", Token: wo.token}); err != nil {
				t.Fatalf("Activate = %v", err)
			}
		}
		// A wrong token's value must not be written either.
		wrong := jobs.NewSecret(TokenPrefix + "wrongwrongwrongwrongwrongwrongwrongwrongwrongwrongww")
		if _, err := svc.Claim(ctx, "THERMO", wrong, hwID(9), "1.0", "s"); err == nil {
			t.Fatal("Claim(wrong token) = nil, want an error")
		}
		secrets = append(secrets, wrong)

		look := func(when string) {
			t.Helper()
			stored := storedBytes(t, svc.Store)
			if len(stored) == 0 {
				t.Fatalf("%s: nothing stored found", when)
			}
			for where, raw := range stored {
				for _, s := range secrets {
					body := strings.TrimPrefix(s.Reveal(), TokenPrefix)
					if bytes.Contains(raw, []byte(body)) || bytes.Contains(bytes.ToUpper(raw), []byte(strings.ToUpper(body))) {
						t.Errorf("%s %s holds a token secret", when, where)
					}
				}
			}
		}
		look("open:")
		if err := svc.Store.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		look("closed:")
	})
}
