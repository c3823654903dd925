package flasher_test

import (
	"testing"

	"github.com/station-dev/station/flasher"
)

// reporting is a backend that reads its locks back; its other methods
// are never called here.
type reporting struct{ flasher.Backend }

func (reporting) LockReport() flasher.LockReport {
	return flasher.LockReport{State: map[string]bool{"JTAG_DISABLE": true}}
}

// wrapper adds to a backend, as the fixture's port closer does.
type wrapper struct{ flasher.Backend }

func (w wrapper) Unwrap() flasher.Backend { return w.Backend }

// plain wraps without saying so.
type plain struct{ flasher.Backend }

func TestReportLock(t *testing.T) {
	tests := []struct {
		name string
		b    flasher.Backend
		want bool
	}{
		{"reporter", reporting{}, true},
		{"wrapped twice", wrapper{wrapper{reporting{}}}, true},
		{"not a reporter", wrapper{plain{}}, false},
		{"hidden by a wrapper without Unwrap", plain{reporting{}}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		rep, ok := flasher.ReportLock(tt.b)
		if ok != tt.want || ok && !rep.State["JTAG_DISABLE"] {
			t.Errorf("ReportLock(%s) = %+v, %v; want found %v", tt.name, rep, ok, tt.want)
		}
	}
}
