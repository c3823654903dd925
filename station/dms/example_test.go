package dms_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
)

// Example seeds a DMS with one work order, as station demo does, and runs
// a device through it the way the pipeline does.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dms-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := dms.OpenSQLite(ctx, filepath.Join(dir, "dms.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	svc := &dms.Service{Store: store}

	firmware := []byte("application image")
	res, err := svc.Seed(ctx, dms.SeedSpec{
		Customer: dms.Customer{ID: "ACME", Name: "Acme Heating"},
		Product:  jobs.Product{Code: "THERMO", Name: "Smart thermostat", PartNumber: "TH-100-A", Stage: jobs.StageProduction},
		Bundle: jobs.Bundle{Version: "2.3.1", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{
			{Name: "thermo-app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin", URL: "thermo-app.bin"},
		}},
		Files:     map[string][]byte{"thermo-app.bin": firmware},
		WorkOrder: dms.WorkOrderSpec{ID: "WO-2026-0042", Quantity: 3, Lock: jobs.LockPolicy{DMS: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	wo := res.WorkOrder
	fmt.Println(wo.ID, wo.Product.Code, wo.Bundle.Version, wo.Authorization.Token)

	var up jobs.Upstream = &dms.Local{Service: svc}
	for range 2 {
		a, err := up.Activate(ctx, jobs.ActivateRequest{
			WorkOrder: wo.ID, Product: wo.Product.Code, HardwareID: "24:0a:c4:12:34:56",
			FirmwareVersion: wo.Bundle.Version, Token: wo.Authorization.Token, Station: "line-1",
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s locked=%v repeat=%v claims left %d\n", a.Serial, a.Locked, a.Repeat, a.ClaimsLeft)
	}
	// Output:
	// WO-2026-0042 THERMO 2.3.1 [redacted]
	// THERMO-000001 locked=true repeat=false claims left 2
	// THERMO-000001 locked=true repeat=true claims left 2
}
