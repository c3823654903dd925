package ui

import (
	"context"
	"io"

	"github.com/station-dev/station/station/localapi"
)

// API is what the kiosk asks of the station daemon: the local API's
// client (*localapi.Client) satisfies it, and tests hand in the real
// client over a unix socket or a fake.
//
// Commands return the state after the command, so the kiosk shows its
// effect at once; errors carry the daemon's message for the operator.
type API interface {
	// State returns the whole state now.
	State(ctx context.Context) (localapi.State, error)
	// Watch streams events until ctx ends: first a "state" event; a
	// "disconnected" event when the daemon goes away, then a fresh
	// "state" once it is back.
	Watch(ctx context.Context) <-chan localapi.Event
	Load(ctx context.Context, ref string) (localapi.State, error)
	Start(ctx context.Context) (localapi.State, error)
	Pause(ctx context.Context) (localapi.State, error)
	// Stop and Override carry the supervisor's own PIN or badge.
	Stop(ctx context.Context, sup localapi.Credential) (localapi.State, error)
	Retry(ctx context.Context, slot string) (localapi.State, error)
	Skip(ctx context.Context, slot string) (localapi.State, error)
	Override(ctx context.Context, slot, reason string, sup localapi.Credential) (localapi.State, error)
	Reprint(ctx context.Context, slot string) (localapi.State, error)
	LabelPNG(ctx context.Context, slot string) ([]byte, error)
	SignIn(ctx context.Context, req localapi.SignInRequest) (localapi.Operator, error)
	SignOut(ctx context.Context) (localapi.State, error)
	Devices(ctx context.Context, q localapi.DeviceQuery) ([]localapi.DeviceRow, error)
	DeviceLog(ctx context.Context, device string) ([]localapi.LogLine, error)
	// ExportSigned writes the signed QA export (station export's) of the
	// selected devices to w, as a tar archive.
	ExportSigned(ctx context.Context, q localapi.DeviceQuery, w io.Writer) error
}
