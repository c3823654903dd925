package label

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strings"
	"sync"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/code128"
	"github.com/boombuler/barcode/datamatrix"
	"github.com/boombuler/barcode/qr"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/station-dev/station/jobs"
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

// Layout positions, in dots from the label's top left corner. ZPL and PNG
// use the same numbers.
const (
	textX       = 30
	textMaxX    = 520 // text must stay left of the 2D code's quiet zone
	barX        = 30
	barModule   = 2 // ^BY2
	codeX       = 580
	codeY       = 40
	qrModule    = 6 // ^BQN,2,6
	dmModule    = 8 // ^BXN,8,200
	quietCode1D = 10
	quietCode2D = 4
)

// textLine is one line of human-readable text.
type textLine struct {
	y, h int
	bold bool
	text string
}

// Renderer renders labels. The zero value renders every template except
// "gs1" for part numbers that are not a 14-digit GTIN.
type Renderer struct {
	// GTIN is the 14-digit GS1 trade item number used by the "gs1"
	// template when the part number is not itself a GTIN.
	GTIN string
}

// design is a label resolved from a template: everything needed to draw it.
type design struct {
	lines []textLine
	// bar is the Code 128 content as ZPL ^FD data; barData the content
	// for the encoder (FNC1 as code128.FNC1); barHuman the text under it.
	bar, barMode, barData, barHuman string
	// matrix is "qr" or "datamatrix"; matrixData its content.
	matrix, matrixData string
	copies             int
	// barY and barHeight place the 1D barcode; bc is its symbol.
	barY, barHeight int
	bc              barcode.Barcode
}

// CheckTemplate reports whether name is a known template, so a work order
// can be refused before any device is flashed.
func CheckTemplate(name string) error {
	switch name {
	case "", TemplateDefault, TemplateDataMatrix, TemplateGS1:
		return nil
	}
	return fmt.Errorf("unknown label template %q: use %q, %q or %q", name, TemplateDefault, TemplateDataMatrix, TemplateGS1)
}

func (r Renderer) design(l jobs.Label) (design, error) {
	if err := CheckTemplate(l.Template); err != nil {
		return design{}, err
	}
	d := design{
		bar: l.Serial, barMode: "N", barData: l.Serial, barHuman: l.Serial,
		matrix: "qr", matrixData: l.Serial + "|" + string(l.HardwareID),
		copies: l.Copies,
	}
	if l.Serial == "" {
		return design{}, errors.New("label has no serial number: the device must have a serial before its label is printed")
	}
	switch l.Template {
	case TemplateDataMatrix:
		d.matrix = "datamatrix"
	case TemplateGS1:
		d.matrix = "datamatrix"
		gtin := l.PartNumber
		if !isGTIN(gtin) {
			gtin = r.GTIN
		}
		if !isGTIN(gtin) {
			return design{}, fmt.Errorf("gs1 label for %s: part number %q is not a 14-digit GTIN and no valid GTIN is configured: set the product's GTIN or use the %q template", l.Serial, l.PartNumber, TemplateDefault)
		}
		if !gs1Serial(l.Serial) {
			return design{}, fmt.Errorf("gs1 label: serial %q cannot go in AI (21) (1-20 letters, digits, '-', '.', '/'): use the %q template", l.Serial, TemplateDefault)
		}
		// ZPL ^BC mode D (UCC/EAN): parentheses mark AIs, the printer adds
		// FNC1 after the start code and prints "(01)…(21)…".
		d.bar = "(01)" + gtin + "(21)" + l.Serial
		d.barMode = "D"
		d.barData = string(code128.FNC1) + "01" + gtin + "21" + l.Serial
		d.barHuman = d.bar
	}
	bc, err := code128.Encode(d.barData) // FNC1 is code128.FNC1
	if err != nil {
		return design{}, fmt.Errorf("label barcode for %q: %w", d.barHuman, err)
	}
	d.bc = bc
	w := bc.Bounds().Dx() * barModule
	texts := []string{l.ProductName, "P/N " + l.PartNumber, "ID " + string(l.HardwareID),
		"FW " + l.FirmwareVersion + "   WO " + l.WorkOrder, dateText(l) + "  " + l.Station + "/" + l.Slot}
	switch {
	case barX+w <= codeX-quietCode2D*dmModule:
		// Barcode beside the 2D code, text above and below it.
		d.barY, d.barHeight = 100, 80
		d.lines = []textLine{{20, 38, true, texts[0]}, {64, 26, false, texts[1]},
			{230, 26, false, texts[2]}, {264, 26, false, texts[3]}, {298, 22, false, texts[4]}}
	case barX+w <= Width-quietCode1D*barModule:
		// A long barcode (GS1) gets a full-width row under the 2D code.
		d.barY, d.barHeight = 250, 100
		d.lines = []textLine{{20, 38, true, texts[0]}, {64, 26, false, texts[1]},
			{100, 26, false, texts[2]}, {134, 26, false, texts[3]}, {168, 22, false, texts[4]}}
	default:
		return design{}, fmt.Errorf("barcode %q is too long for the label: shorten the serial number format", d.barHuman)
	}
	return d, nil
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

// ZPL renders l as ZPL II. Every field value goes through ^FH escaping.
func (r Renderer) ZPL(l jobs.Label) ([]byte, error) {
	d, err := r.design(l)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "^XA\n^CI28\n^PW%d\n^LL%d\n", Width, Height)
	for _, t := range d.lines {
		fmt.Fprintf(&b, "^FO%d,%d^A0N,%d,%d^FB%d,1,0,L^FH^FD%s^FS\n", textX, t.y, t.h, t.h, textMaxX-textX, Escape(t.text))
	}
	fmt.Fprintf(&b, "^FO%d,%d^BY%d^BC%s,%d,Y,N,N,%s^FH^FD%s^FS\n", barX, d.barY, barModule, "N", d.barHeight, d.barMode, Escape(d.bar))
	switch d.matrix {
	case "qr":
		fmt.Fprintf(&b, "^FO%d,%d^BQN,2,%d^FH^FDMA,%s^FS\n", codeX, codeY, qrModule, Escape(d.matrixData))
	case "datamatrix":
		fmt.Fprintf(&b, "^FO%d,%d^BXN,%d,200^FH^FD%s^FS\n", codeX, codeY, dmModule, Escape(d.matrixData))
	}
	if d.copies > 1 {
		fmt.Fprintf(&b, "^PQ%d\n", d.copies)
	}
	b.WriteString("^XZ\n")
	return []byte(b.String()), nil
}

// PNG renders l as a 812x406 grayscale PNG: the same layout as ZPL, for the
// kiosk preview and the label folder.
func (r Renderer) PNG(l jobs.Label) ([]byte, error) {
	d, err := r.design(l)
	if err != nil {
		return nil, err
	}
	img := image.NewGray(image.Rect(0, 0, Width, Height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for _, t := range d.lines {
		if err := drawText(img, textX, t.y, t.h, t.bold, t.text); err != nil {
			return nil, err
		}
	}
	// Code 128 (or GS1-128) with its human-readable line under it.
	bc, err := barcode.Scale(d.bc, d.bc.Bounds().Dx()*barModule, d.barHeight)
	if err != nil {
		return nil, fmt.Errorf("label barcode: %w", err)
	}
	draw.Draw(img, image.Rect(barX, d.barY, barX+bc.Bounds().Dx(), d.barY+d.barHeight), bc, bc.Bounds().Min, draw.Src)
	if err := drawText(img, barX, d.barY+d.barHeight+6, 22, false, d.barHuman); err != nil {
		return nil, err
	}
	var m barcode.Barcode
	module := qrModule
	switch d.matrix {
	case "qr":
		m, err = qr.Encode(d.matrixData, qr.M, qr.Auto)
	case "datamatrix":
		m, err = datamatrix.Encode(d.matrixData)
		module = dmModule
	}
	if err != nil {
		return nil, fmt.Errorf("label 2D code: %w", err)
	}
	n := m.Bounds().Dx()
	if codeX+n*module+quietCode2D*module > Width || codeY+m.Bounds().Dy()*module > Height {
		return nil, fmt.Errorf("label 2D code data %q is too long for the label", d.matrixData)
	}
	m, err = barcode.Scale(m, n*module, m.Bounds().Dy()*module)
	if err != nil {
		return nil, fmt.Errorf("label 2D code: %w", err)
	}
	draw.Draw(img, image.Rect(codeX, codeY, codeX+m.Bounds().Dx(), codeY+m.Bounds().Dy()), m, m.Bounds().Min, draw.Src)
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, fmt.Errorf("label image: %w", err)
	}
	return out.Bytes(), nil
}

type fonts struct{ regular, bold *opentype.Font }

var loadFonts = sync.OnceValues(func() (fonts, error) {
	r, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return fonts{}, fmt.Errorf("label font: %w", err)
	}
	b, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return fonts{}, fmt.Errorf("label font: %w", err)
	}
	return fonts{r, b}, nil
})

// drawText draws text with its cell top at y and cell height h dots, clipped
// at textMaxX so it never runs into the 2D code.
func drawText(img *image.Gray, x, y, h int, bold bool, text string) error {
	if text == "" {
		return nil
	}
	fs, err := loadFonts()
	if err != nil {
		return err
	}
	f := fs.regular
	if bold {
		f = fs.bold
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: float64(h), DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return fmt.Errorf("label font: %w", err)
	}
	defer face.Close()
	dst := img.SubImage(image.Rect(x, y, textMaxX, y+h+h/3)).(*image.Gray)
	dr := font.Drawer{Dst: dst, Src: image.NewUniform(color.Black), Face: face,
		Dot: fixed.P(x, y+face.Metrics().Ascent.Ceil())}
	dr.DrawString(text)
	return nil
}
