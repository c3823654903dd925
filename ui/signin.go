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

// pinPad is the sign-in dialog: a PIN pad (digits, clear, OK) and a badge
// field a badge scanner types into.
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
	badge  *scannerEntry
}

// showSignIn opens the sign-in dialog.
func (k *Kiosk) showSignIn() {
	p := &pinPad{k: k, dots: text("", 44, true), msg: widget.NewLabel("Type your PIN, or scan your badge.")}
	p.dots.Alignment = fyne.TextAlignCenter
	p.msg.Wrapping = fyne.TextWrapWord
	p.msg.Alignment = fyne.TextAlignCenter
	for i := range p.digits {
		d := string(rune('0' + i))
		p.digits[i] = widget.NewButton(d, func() { p.type_(d) })
	}
	p.clear = widget.NewButton("Clear", func() { p.pin = ""; p.showDots() })
	p.ok = widget.NewButton("OK", func() {
		if p.pin == "" {
			p.msg.SetText("Type your PIN first.")
			return
		}
		p.submit(localapi.SignInRequest{PIN: p.pin})
	})
	p.ok.Importance = widget.HighImportance
	p.cancel = widget.NewButton("Cancel", func() { p.d.Hide() })
	p.badge = newScannerEntry()
	p.badge.SetPlaceHolder("or scan your badge")
	p.badge.OnSubmitted = func(s string) {
		s = strings.TrimSpace(s)
		p.badge.SetText("")
		if s != "" {
			p.submit(localapi.SignInRequest{Badge: s})
		}
	}
	key := func(b *widget.Button) fyne.CanvasObject { return sized(b, 110, 90) }
	pad := container.NewGridWithColumns(3,
		key(p.digits[1]), key(p.digits[2]), key(p.digits[3]),
		key(p.digits[4]), key(p.digits[5]), key(p.digits[6]),
		key(p.digits[7]), key(p.digits[8]), key(p.digits[9]),
		key(p.clear), key(p.digits[0]), key(p.ok),
	)
	content := container.NewVBox(sized(p.msg, 380, 0), sized(p.dots, 0, 60), pad,
		sized(p.badge, 0, 70), sized(p.cancel, 0, 70))
	p.d = dialog.NewCustomWithoutButtons("Sign in", content, k.win)
	p.d.SetOnClosed(func() {
		if k.pinPad == p {
			k.pinPad = nil
		}
		k.refocusLater()
	})
	k.pinPad = p
	p.d.Show()
	k.win.Canvas().Focus(p.badge)
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

// submit signs in off the UI goroutine; the dialog closes on success and
// says the daemon's words on failure.
func (p *pinPad) submit(req localapi.SignInRequest) {
	p.msg.SetText("Signing in…")
	k := p.k
	go func() {
		ctx, cancel := context.WithTimeout(k.runCtx(), k.opts.CommandTimeout)
		defer cancel()
		op, err := k.api.SignIn(ctx, req)
		if err != nil {
			k.log.Warn("sign-in failed", "err", err)
		} else {
			k.log.Info("signed in", "operator", op.Name, "supervisor", op.Supervisor)
			k.m.setOperator(&op)
		}
		k.do(func() {
			if err != nil {
				p.pin = ""
				p.showDots()
				p.msg.SetText(errorWords(err))
				return
			}
			p.d.Hide()
		})
	}()
}

// signOut signs the operator out.
func (k *Kiosk) signOut() {
	k.command("Could not sign out", k.api.SignOut)
}
