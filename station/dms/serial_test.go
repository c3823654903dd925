package dms

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

// TestSerials: serials are "<product code>-<6-digit counter>", counted
// per product, unique, the same on a repeat claim, and the same when a
// device comes back to a development product it left.
func TestSerials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "A", jobs.StageDevelopment)
		addProduct(t, s, "B", jobs.StageDevelopment)
		_, secretA := addToken(t, s, "A", 100, time.Time{})
		_, secretB := addToken(t, s, "B", 100, time.Time{})
		claim := func(product string, secret jobs.Secret, n int) string {
			t.Helper()
			act, err := s.Claim(ctx, product, secret, hwID(n), "1.0", "s")
			if err != nil {
				t.Fatalf("Claim(%s, %s) = %v", product, hwID(n), err)
			}
			return act.Serial
		}

		tests := []struct {
			name    string
			product string
			secret  jobs.Secret
			device  int
			want    string
		}{
			{"first device of A", "A", secretA, 1, "A-000001"},
			{"second device of A", "A", secretA, 2, "A-000002"},
			{"first device of B counts from 1", "B", secretB, 3, "B-000001"},
			{"repeat claim keeps the serial", "A", secretA, 1, "A-000001"},
			{"device 1 moves to B and gets B's next", "B", secretB, 1, "B-000002"},
			{"device 1 comes back to A with its old serial", "A", secretA, 1, "A-000001"},
			{"a new device of A is not given a reused number", "A", secretA, 4, "A-000003"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := claim(tt.product, tt.secret, tt.device); got != tt.want {
					t.Errorf("Claim(%s, %s).Serial = %s, want %s", tt.product, hwID(tt.device), got, tt.want)
				}
			})
		}

		seen := map[string]bool{}
		for n := 10; n < 40; n++ {
			serial := claim("A", secretA, n)
			if seen[serial] {
				t.Errorf("serial %s given twice", serial)
			}
			seen[serial] = true
			if again := claim("A", secretA, n); again != serial {
				t.Errorf("Claim(A, %s) again = %s, want %s", hwID(n), again, serial)
			}
		}
		if want := fmt.Sprintf("A-%06d", 33); !seen[want] {
			t.Errorf("serials = %v, want them to run up to %s", seen, want)
		}
	})
}
