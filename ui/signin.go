package ui

import (
	"context"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/station-dev/station/station/localapi"
)

// pinPad is the PIN dialog: a PIN pad (digits, clear, OK); a badge
// scanner types into the window's key handler, which hands the badge to
// the open pad. It signs an operator in, or carries a supervisor's own
// PIN or badge to the action it authorizes.
type pinPad struct {
	k      *Kiosk
	d      dialog.Dialog
	pin    string
	dots   *canvas.Text
	msg    *widget.Label
	digits [10]*widget.Button
	clear  *widget.Button
	ok     *widget.Button
	cancel *widget.Button
	busy   bool
	// act sends the PIN or badge to the daemon (off the UI goroutine);
	// the dialog closes when it succeeds and shows its error otherwise.
	act func(ctx context.Context, cred localapi.Credential) error
}

// showSignIn opens the sign-in dialog.
func (k *Kiosk) showSignIn() {
	k.showPINPad("Sign in", "Type your PIN, or scan your badge.", func(ctx context.Context, cred localapi.Credential) error {
		op, err := k.api.SignIn(ctx, cred)
		if err != nil {
			return err
		}
		k.log.Info("signed in", "operator", op.Name, "supervisor", op.Supervisor)
		k.m.setOperator(&op)
		return nil
	})
}

// askSupervisor opens the PIN dialog for an action only a supervisor may
// take: what says what it does, and act does it with the supervisor's own
// PIN or badge. Who is signed in at the kiosk does not matter: the daemon
// wants the supervisor's credential with the request.
func (k *Kiosk) askSupervisor(title, what string, act func(ctx context.Context, cred localapi.Credential) (localapi.State, error)) {
	k.showPINPad(title, what+"\nA supervisor types their PIN or scans their badge.", func(ctx context.Context, cred localapi.Credential) error {
		st, err := act(ctx, cred)
		if err != nil {
			return err
		}
		k.m.mergeState(st)
		return nil
	})
}

// showPINPad opens the PIN dialog with title and prompt; act gets what is
// typed or scanned.
func (k *Kiosk) showPINPad(title, prompt string, act func(ctx context.Context, cred localapi.Credential) error) {
	p := &pinPad{k: k, dots: text("", 44, true), msg: widget.NewLabel(prompt), act: act}
	p.dots.Alignment = fyne.TextAlignCenter
	p.msg.Wrapping = fyne.TextWrapWord
	p.msg.Alignment = fyne.TextAlignCenter
	for i := range p.digits {
		d := string(rune('0' + i))
		p.digits[i] = widget.NewButton(d, func() { p.type_(d) })
	}
	p.clear = widget.NewButton("Clear", func() { p.pin = ""; p.showDots() })
	p.ok = widget.NewButton("OK", p.submitPIN)
	p.ok.Importance = widget.HighImportance
	p.cancel = widget.NewButton("Cancel", func() { p.d.Hide() })
	badge := widget.NewLabel("or scan your badge")
	badge.Alignment = fyne.TextAlignCenter
	key := func(b *widget.Button) fyne.CanvasObject { return sized(b, 110, 90) }
	pad := container.NewGridWithColumns(3,
		key(p.digits[1]), key(p.digits[2]), key(p.digits[3]),
		key(p.digits[4]), key(p.digits[5]), key(p.digits[6]),
		key(p.digits[7]), key(p.digits[8]), key(p.digits[9]),
		key(p.clear), key(p.digits[0]), key(p.ok),
	)
	content := container.NewVBox(sized(p.msg, 380, 0), sized(p.dots, 0, 60), pad,
		badge, sized(p.cancel, 0, 70))
	p.d = dialog.NewCustomWithoutButtons(title, content, k.win)
	p.d.SetOnClosed(func() {
		if k.pinPad == p {
			k.pinPad = nil
		}
		k.showScan()
		k.replayLater()
	})
	k.win.Canvas().Unfocus()
	k.pinPad = p
	p.d.Show()
	k.showScan()
}

// submitPIN sends the PIN typed on the pad (OK, or Enter).
func (p *pinPad) submitPIN() {
	if p.pin == "" {
		p.msg.SetText("Type your PIN first, or scan your badge.")
		return
	}
	p.submit(localapi.Credential{PIN: p.pin})
}

func (p *pinPad) type_(d string) {
	if len(p.pin) < 12 {
		p.pin += d
	}
	p.showDots()
}

func (p *pinPad) showDots() {
	p.dots.Text = strings.Repeat("●", len(p.pin))
	p.dots.Refresh()
}

// submit sends the PIN or badge off the UI goroutine; the dialog closes
// on success and says the daemon's words on failure (a wrong PIN, how long
// to wait after too many, a lock).
func (p *pinPad) submit(cred localapi.Credential) {
	if p.busy {
		return
	}
	p.busy = true
	p.msg.SetText("Checking…")
	k := p.k
	k.spawn(func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		err := p.act(ctx, cred)
		if err != nil && ctx.Err() == context.DeadlineExceeded {
			err = errTimeout
		}
		if err != nil {
			k.log.Warn("PIN or badge refused", "err", err)
		}
		k.do(func() {
			p.busy = false
			if err != nil {
				p.pin = ""
				p.showDots()
				p.msg.SetText(errorWords(err))
				return
			}
			p.d.Hide()
		})
	})
}

// signOut signs the operator out.
func (k *Kiosk) signOut() {
	k.command("Could not sign out", k.api.SignOut)
}
