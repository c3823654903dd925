package station

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"

	"github.com/station-dev/station/fixtures"
	"github.com/station-dev/station/flasher/gdb"
)

// startQEMUSim starts one QEMU netduinoplus2 (an STM32F405) per slot,
// halted, with its GDB server on a free loopback port: the slots attach to
// them as a line attaches to J-Link GDB servers that run already. QEMU's
// STM32 has no unique-id area, so each slot's fixture entry gives the
// device an id.
func startQEMUSim(ctx context.Context, dir string, count int, faults faultFlags, logger *slog.Logger) (*simulated, error) {
	if len(faults) > 0 {
		return nil, usageErr("--fault: QEMU targets take no injected faults (simulated esp and stm32 devices do)")
	}
	if _, err := exec.LookPath("qemu-system-arm"); err != nil {
		return nil, fmt.Errorf("--protocol gdb runs its targets in qemu-system-arm, which is not installed: apt-get install qemu-system-arm (scripts/test installs it)")
	}
	fx := &fixtures.Fixture{Name: "QEMU netduinoplus2 targets"}
	var servers []*gdb.Server
	closeAll := func() error {
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	s := &simulated{fixture: fx, close: closeAll}
	for i := range count {
		srv, err := gdb.StartServer(ctx, gdb.ServerConfig{Kind: gdb.KindQEMU, Logger: logger})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("start QEMU for slot %d: %w", i+1, err)
		}
		servers = append(servers, srv)
		name := slotName(i, count)
		id := fmt.Sprintf("QEMU-%s-%d", name, srv.Pid())
		fx.Slots = append(fx.Slots, fixtures.Slot{Name: name, Protocol: "gdb",
			GDB: &fixtures.GDBSlot{Attach: srv.Addr(), Target: "netduinoplus2", HardwareID: id}})
		s.devices = append(s.devices, simDevice{Slot: name, Port: srv.Addr(), ID: id})
	}
	if err := fx.Validate(); err != nil {
		closeAll()
		return nil, err
	}
	return s, nil
}
