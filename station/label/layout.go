package label

import (
	"errors"
	"fmt"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/datamatrix"
	"github.com/boombuler/barcode/qr"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/label/code128"
)

// Template names a label layout variant (jobs.Label.Template).
const (
	// TemplateDefault is a Code 128 of the serial and a QR code of
	// "serial|hardware id". The empty template name means the same.
	TemplateDefault = "default"
	// TemplateDataMatrix is TemplateDefault with a DataMatrix in place of
	// the QR code.
	TemplateDataMatrix = "datamatrix"
	// TemplateGS1 is a GS1-128 barcode holding (01) GTIN and (21) serial,
	// with a DataMatrix of "serial|hardware id".
	TemplateGS1 = "gs1"
)

// Label geometry: a 4x2 inch label at 203 dpi, in dots.
const (
	DPI    = 203
	Width  = 812
	Height = 406
)

// Layout constants, in dots from the label's top left corner unless said
// otherwise.
const (
	textX       = 30
	textMaxX    = 520 // text stays left of the 2D code's quiet zone
	barX        = 30
	barModule   = 2 // ^BY2
	codeX       = 580
	codeY       = 40
	qrModule    = 6 // ^BQN,2,6
	dmModule    = 8 // ^BXN,8,200
	quietCode1D = 10
	quietCode2D = 4
	humanH      = 22 // the barcode's human-readable line
	humanMinH   = 16 // … shrunk at most to this before it is clipped
	humanGap    = 6  // between the bars and the human-readable line
)

// productNameH are the heights the product name tries, largest first;
// at the last it is clipped.
var productNameH = []int{38, 32, 26}

// field is one line of text: the same in the ZPL (^FO x,y ^A0N,h,h, and
// ^FB w,1,0,C when centred) and in the PNG (font0 at height h).
type field struct {
	x, y, w int // the box: left, top (the capitals' top) and width
	h       int // font height in dots
	center  bool
	// text is one line that fits w in font0 (fit): never wrapped by a
	// printer, never clipped by the PNG.
	text string
}

// layout is a label resolved from its template and laid out in dots: the
// one model that ZPL, PNG and the fit check all read.
type layout struct {
	fields []field
	// bar is the 1D barcode, drawn barModule dots per module from
	// (barX, barY) down barHeight dots; human is its human-readable line.
	bar             code128.Symbol
	barY, barHeight int
	human           field
	// matrix is "qr" or "datamatrix"; matrixData its content; code the
	// encoded symbol, drawn module dots per module at (codeX, codeY).
	matrix, matrixData string
	code               barcode.Barcode
	module             int
	copies             int
}

// barWidth is the 1D barcode's width in dots.
func (lo layout) barWidth() int { return lo.bar.Modules() * barModule }

// CheckTemplate reports whether name is a known template, so a work order
// can be refused before any device is flashed.
func CheckTemplate(name string) error {
	switch name {
	case "", TemplateDefault, TemplateDataMatrix, TemplateGS1:
		return nil
	}
	return fmt.Errorf("unknown label template %q: use %q, %q or %q", name, TemplateDefault, TemplateDataMatrix, TemplateGS1)
}

// layout resolves l's template and lays it out, or says why l does not
// fit the label.
func (r Renderer) layout(l jobs.Label) (layout, error) {
	if err := CheckTemplate(l.Template); err != nil {
		return layout{}, err
	}
	if l.Serial == "" {
		return layout{}, errors.New("label has no serial number: the device must have a serial before its label is printed")
	}
	lo := layout{matrix: "qr", matrixData: l.Serial + "|" + string(l.HardwareID), module: qrModule, copies: l.Copies}
	barData, human := l.Serial, l.Serial
	switch l.Template {
	case TemplateDataMatrix:
		lo.matrix, lo.module = "datamatrix", dmModule
	case TemplateGS1:
		lo.matrix, lo.module = "datamatrix", dmModule
		gtin := l.PartNumber
		if !isGTIN(gtin) {
			gtin = r.GTIN
		}
		if !isGTIN(gtin) {
			return layout{}, fmt.Errorf("gs1 label for %s: part number %q is not a 14-digit GTIN and no valid GTIN is configured: set the product's GTIN or use the %q template", l.Serial, l.PartNumber, TemplateDefault)
		}
		if !gs1Serial(l.Serial) {
			return layout{}, fmt.Errorf("gs1 label: serial %q cannot go in AI (21) (1-20 letters, digits, '-', '.', '/'): use the %q template", l.Serial, TemplateDefault)
		}
		// GS1-128: FNC1 first, then AI (01) GTIN and AI (21) serial; (21)
		// is last, so no FNC1 separator ends it. The human-readable line
		// shows the AIs in parentheses (GS1 General Specifications 5.4.4.5).
		barData = string(code128.FNC1) + "01" + gtin + "21" + l.Serial
		human = "(01)" + gtin + "(21)" + l.Serial
	}
	var err error
	if lo.bar, err = code128.Encode(barData); err != nil {
		return layout{}, fmt.Errorf("label barcode for %q: %w", human, err)
	}
	switch lo.matrix {
	case "qr":
		lo.code, err = qr.Encode(lo.matrixData, qr.M, qr.Auto)
	case "datamatrix":
		lo.code, err = datamatrix.Encode(lo.matrixData)
	}
	if err != nil {
		return layout{}, fmt.Errorf("label 2D code: %w", err)
	}
	codeW, codeH := lo.code.Bounds().Dx()*lo.module, lo.code.Bounds().Dy()*lo.module
	if codeX+codeW+quietCode2D*lo.module > Width || codeY+codeH > Height {
		return layout{}, fmt.Errorf("label 2D code data %q is too long for the label", lo.matrixData)
	}
	// The 1D barcode and the text stay clear of the 2D code's quiet zone
	// (the DataMatrix's, the wider one, for every template).
	codeLeft := codeX - quietCode2D*dmModule
	w := lo.barWidth()
	var rows []int // tops of the five text lines
	rightOfBar := codeLeft
	switch {
	case barX+w <= codeLeft:
		// Barcode beside the 2D code, text above and below it.
		lo.barY, lo.barHeight = 100, 80
		rows = []int{20, 64, 230, 264, 298}
	case barX+w <= Width-quietCode1D*barModule:
		// A long barcode (GS1) gets a full-width row under the 2D code.
		lo.barY, lo.barHeight = 250, 100
		rows = []int{20, 64, 100, 134, 168}
		rightOfBar = Width
	default:
		return layout{}, fmt.Errorf("barcode %q is too long for the label (%d dots wide, room for %d): shorten the serial number format", human, w, Width-quietCode1D*barModule-barX)
	}
	lines := []string{"P/N " + l.PartNumber, "ID " + string(l.HardwareID),
		"FW " + l.FirmwareVersion + "   WO " + l.WorkOrder, dateText(l) + "  " + l.Station + "/" + l.Slot}
	heights := []int{26, 26, 26, 22}
	lo.fields = append(lo.fields, fitShrinking(field{x: textX, y: rows[0], w: textMaxX - textX}, l.ProductName, productNameH))
	for i, s := range lines {
		lo.fields = append(lo.fields, fitShrinking(field{x: textX, y: rows[i+1], w: textMaxX - textX}, s, heights[i:i+1]))
	}
	// The human-readable line is centred under the bars, in a box as wide
	// as the room on either side of their centre allows.
	c := barX + w/2
	half := min(c, rightOfBar-c)
	lo.human = fitShrinking(field{x: c - half, y: lo.barY + lo.barHeight + humanGap, w: 2 * half, center: true},
		human, []int{humanH, 20, 18, humanMinH})
	return lo, nil
}

// fitShrinking sets f's height to the first of heights at which text fits
// f's width, or the last with text clipped to fit.
func fitShrinking(f field, text string, heights []int) field {
	for _, h := range heights {
		f.h = h
		if textWidth(text, h) <= f.w {
			f.text = text
			return f
		}
	}
	f.text = clip(text, f.h, f.w)
	return f
}

func dateText(l jobs.Label) string {
	if l.Date.IsZero() {
		return ""
	}
	return l.Date.Format("2006-01-02")
}

// isGTIN reports whether s is 14 digits with a valid GS1 check digit.
func isGTIN(s string) bool {
	if len(s) != 14 {
		return false
	}
	sum := 0
	for i := 0; i < 13; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		w := 1
		if i%2 == 0 {
			w = 3
		}
		sum += int(c-'0') * w
	}
	return s[13] >= '0' && s[13] <= '9' && int(s[13]-'0') == (10-sum%10)%10
}

func gs1Serial(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '.' || c == '/' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
