package ui

import (
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"

	"github.com/station-dev/station/station/localapi"
)

// kioskTheme is Fyne's dark theme with text, paddings and touch targets
// big enough to read and hit on a touch screen from 1.5 m.
type kioskTheme struct{ base fyne.Theme }

var _ fyne.Theme = kioskTheme{}

func newTheme() fyne.Theme { return kioskTheme{base: theme.DefaultTheme()} }

// Color returns the dark variant's colours, whatever the system asks:
// the kiosk is always high contrast.
func (t kioskTheme) Color(n fyne.ThemeColorName, _ fyne.ThemeVariant) color.Color {
	switch n {
	case theme.ColorNameBackground:
		return color.NRGBA{0x10, 0x12, 0x16, 0xff}
	case theme.ColorNameForeground:
		return color.White
	case theme.ColorNameDisabled:
		return color.NRGBA{0x80, 0x80, 0x80, 0xff}
	case theme.ColorNameDisabledButton:
		return color.NRGBA{0x38, 0x3a, 0x40, 0xff}
	}
	return t.base.Color(n, theme.VariantDark)
}

// Font returns the default fonts.
func (t kioskTheme) Font(s fyne.TextStyle) fyne.Resource { return t.base.Font(s) }

// Icon returns the default icons.
func (t kioskTheme) Icon(n fyne.ThemeIconName) fyne.Resource { return t.base.Icon(n) }

// Size makes text, paddings, icons and scroll bars larger.
func (t kioskTheme) Size(n fyne.ThemeSizeName) float32 {
	switch n {
	case theme.SizeNameText:
		return 24
	case theme.SizeNameHeadingText:
		return 36
	case theme.SizeNameSubHeadingText:
		return 28
	case theme.SizeNameCaptionText:
		return 18
	case theme.SizeNamePadding:
		return 8
	case theme.SizeNameInnerPadding:
		return 14
	case theme.SizeNameInlineIcon:
		return 32
	case theme.SizeNameScrollBar:
		return 24
	case theme.SizeNameScrollBarSmall:
		return 8
	case theme.SizeNameInputBorder:
		return 3
	case theme.SizeNameLineSpacing:
		return 6
	}
	return t.base.Size(n)
}

// Status colours: the tile's background and the colour of its text.
var (
	colorPassed  = color.NRGBA{0x1b, 0x8a, 0x3a, 0xff} // green
	colorFailed  = color.NRGBA{0xd3, 0x20, 0x20, 0xff} // red
	colorRunning = color.NRGBA{0x15, 0x5f, 0xc8, 0xff} // blue
	colorWaiting = color.NRGBA{0xff, 0xb0, 0x00, 0xff} // amber
	colorEmpty   = color.NRGBA{0x4a, 0x4d, 0x52, 0xff} // grey
	colorReady   = color.NRGBA{0x2e, 0x5e, 0x6e, 0xff} // slate teal
	colorSkipped = color.NRGBA{0x6b, 0x55, 0x7a, 0xff} // muted purple
	// colorOverridden is a deeper amber than waiting's: a failed device a
	// supervisor accepted, never the green of a pass.
	colorOverridden = color.NRGBA{0xe0, 0x7b, 0x00, 0xff}
	colorUnknown    = color.NRGBA{0x9a, 0x9d, 0xa3, 0xff} // grey text: not known now

	colorTextLight = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	colorTextDark  = color.NRGBA{0x10, 0x10, 0x10, 0xff}

	colorTrackLight = color.NRGBA{0x00, 0x00, 0x00, 0x60} // progress track on a tile
	colorBarLight   = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	colorBarDark    = color.NRGBA{0x10, 0x10, 0x10, 0xff}

	colorAlertError   = colorFailed
	colorAlertWarning = colorWaiting
	colorAlertInfo    = colorRunning
	colorOK           = color.NRGBA{0x3c, 0xc8, 0x64, 0xff} // bright green text on the dark background
	colorBad          = color.NRGBA{0xff, 0x5a, 0x4a, 0xff} // bright red text on the dark background
	colorBannerDown   = color.NRGBA{0xff, 0x8f, 0x00, 0xff}
	colorOverlayGrey  = color.NRGBA{0x10, 0x12, 0x16, 0xb0}
)

// statusColors returns a slot status's background and text colours.
func statusColors(s localapi.SlotStatus) (bg, fg color.NRGBA) {
	switch s {
	case localapi.SlotPassed:
		return colorPassed, colorTextLight
	case localapi.SlotFailed, localapi.SlotRemoved:
		return colorFailed, colorTextLight
	case localapi.SlotOverridden:
		return colorOverridden, colorTextDark
	case localapi.SlotRunning:
		return colorRunning, colorTextLight
	case localapi.SlotWaiting:
		return colorWaiting, colorTextDark
	case localapi.SlotReady:
		return colorReady, colorTextLight
	case localapi.SlotSkipped:
		return colorSkipped, colorTextLight
	}
	return colorEmpty, colorTextLight
}

// alertColors returns an alert level's background and text colours.
func alertColors(l localapi.AlertLevel) (bg, fg color.NRGBA) {
	switch l {
	case localapi.AlertError:
		return colorAlertError, colorTextLight
	case localapi.AlertWarning:
		return colorAlertWarning, colorTextDark
	}
	return colorAlertInfo, colorTextLight
}
