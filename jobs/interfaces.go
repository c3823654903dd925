package jobs

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/station/journal"
)

// Connector opens the device in a slot and returns the backend that drives
// it. The fixture implements it; Close on the backend releases the port.
type Connector interface {
	Connect(ctx context.Context, slot string, opts ConnectOptions) (flasher.Backend, error)
}

// ConnectOptions carry the work order's flasher settings to the backend.
type ConnectOptions struct {
	// Baud is the working serial speed; 0 keeps the backend's default.
	Baud int
	// NoCompress turns compressed writes off.
	NoCompress bool
	// Logger is the device's logger.
	Logger *slog.Logger
	// Trace, if not nil, receives the protocol transcript.
	Trace io.Writer
}

// Journal is the part of the station journal the pipeline uses.
type Journal interface {
	Append(ctx context.Context, events ...journal.Event) ([]journal.Event, error)
	Device(ctx context.Context, workOrder, device string) (journal.DeviceState, bool, error)
	LastOnSlot(ctx context.Context, workOrder, slot string) (journal.DeviceState, bool, error)
	Devices(ctx context.Context, workOrder string) ([]journal.DeviceState, error)
	WorkOrder(ctx context.Context, id string) (journal.WorkOrderState, error)
}

// Printer prints a device's label.
type Printer interface {
	Print(ctx context.Context, l Label) error
}

// Label is what goes on a device's label.
type Label struct {
	Template        string             `json:"template"`
	Copies          int                `json:"copies"`
	WorkOrder       string             `json:"work_order"`
	Product         string             `json:"product"`
	ProductName     string             `json:"product_name"`
	PartNumber      string             `json:"part_number"`
	Serial          string             `json:"serial"`
	HardwareID      flasher.HardwareID `json:"hardware_id"`
	FirmwareVersion string             `json:"firmware_version"`
	Date            time.Time          `json:"date"`
	Station         string             `json:"station"`
	Slot            string             `json:"slot"`
}
