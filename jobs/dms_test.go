package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
)

// testDMS is the real reference DMS on SQLite, seeded with the work order.
type testDMS struct {
	*dms.Local
	t *testing.T
}

// seedDMS creates the work order's product, bundle and token in a fresh
// DMS and returns the work order as the DMS has it, token included.
func seedDMS(t *testing.T, dir string, wo jobs.WorkOrder, files map[string][]byte) (*testDMS, jobs.WorkOrder) {
	t.Helper()
	ctx := context.Background()
	store, err := dms.OpenSQLite(ctx, filepath.Join(dir, "dms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc := &dms.Service{Store: store}
	res, err := svc.Seed(ctx, dms.SeedSpec{
		Customer: dms.Customer{ID: "ACME", Name: "Acme"},
		Product:  wo.Product, Bundle: wo.Bundle, Files: files,
		WorkOrder: dms.WorkOrderSpec{ID: wo.ID, Quantity: wo.Quantity, Lock: wo.Lock, Label: wo.Label, Flasher: wo.Flasher},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testDMS{Local: &dms.Local{Service: svc}, t: t}, res.WorkOrder
}

// claims counts the device's activations recorded by the DMS.
func (d *testDMS) claims(hw flasher.HardwareID) int {
	d.t.Helper()
	dev, err := d.Service.Device(context.Background(), hw)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range dev.History {
		if e.Kind == dms.EventActivated {
			n++
		}
	}
	return n
}

// lockElsewhere activates the device to another production product.
func (d *testDMS) lockElsewhere(hw flasher.HardwareID, product string) {
	d.t.Helper()
	ctx := context.Background()
	other := jobs.Product{Code: product, Name: "Other", PartNumber: "OT-1", Stage: jobs.StageProduction}
	if err := d.Service.CreateProduct(ctx, "ACME", other); err != nil {
		d.t.Fatal(err)
	}
	fw := []byte("other firmware")
	sum := sha256.Sum256(fw)
	b := jobs.Bundle{Version: "1.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{
		Name: "other.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Size: int64(len(fw)),
		SHA256: hex.EncodeToString(sum[:]), Format: "bin", URL: "other.bin"}}}
	if _, err := d.Service.CreateBundle(ctx, product, b, map[string][]byte{"other.bin": fw}); err != nil {
		d.t.Fatal(err)
	}
	_, tok, err := d.Service.CreateToken(ctx, product, 1, zeroTime)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.Service.Claim(ctx, product, tok, hw, "1.0", "other-station"); err != nil {
		d.t.Fatal(err)
	}
}
