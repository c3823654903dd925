package label

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"strings"

	"github.com/boombuler/barcode"

	"github.com/station-dev/station/jobs"
)

// Renderer renders labels. The zero value renders every template except
// "gs1" for part numbers that are not a 14-digit GTIN.
type Renderer struct {
	// GTIN is the 14-digit GS1 trade item number used by the "gs1"
	// template when the part number is not itself a GTIN.
	GTIN string
}

// ZPL renders l as ZPL II from its layout. Every field value goes through
// ^FH escaping.
//
// Text fields use the printer's font 0 at the layout's heights. A
// left-aligned line is a plain field (no ^FB), so a printer never wraps
// it onto the next line; a centred one is a one-line ^FB block. The 1D
// barcode is ^BC in mode N with the layout's code sets spelled out
// (code128.Symbol.ZPL) and without the printer's interpretation line: the
// human-readable line is a text field of the layout like the others.
func (r Renderer) ZPL(l jobs.Label) ([]byte, error) {
	lo, err := r.layout(l)
	if err != nil {
		return nil, err
	}
	return lo.zpl(), nil
}

// PNG renders l as a 812x406 grayscale PNG from the same layout as ZPL, for
// the kiosk preview and the label folder.
func (r Renderer) PNG(l jobs.Label) ([]byte, error) {
	lo, err := r.layout(l)
	if err != nil {
		return nil, err
	}
	return lo.png()
}

// zpl renders the layout as ZPL II (Renderer.ZPL).
func (lo layout) zpl() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "^XA\n^CI28\n^PW%d\n^LL%d\n", Width, Height)
	for _, f := range append(lo.fields, lo.human) {
		if f.text == "" {
			continue
		}
		fmt.Fprintf(&b, "^FO%d,%d^A0N,%d,%d", f.x, f.y, f.h, f.h)
		if f.center {
			fmt.Fprintf(&b, "^FB%d,1,0,C", f.w)
		}
		fmt.Fprintf(&b, "^FH^FD%s^FS\n", Escape(f.text))
	}
	fmt.Fprintf(&b, "^FO%d,%d^BY%d^BCN,%d,N,N,N,N^FH^FD%s^FS\n", barX, lo.barY, barModule, lo.barHeight, Escape(lo.bar.ZPL()))
	switch lo.matrix {
	case "qr":
		fmt.Fprintf(&b, "^FO%d,%d^BQN,2,%d^FH^FDMA,%s^FS\n", codeX, codeY, qrModule, Escape(lo.matrixData))
	case "datamatrix":
		fmt.Fprintf(&b, "^FO%d,%d^BXN,%d,200^FH^FD%s^FS\n", codeX, codeY, dmModule, Escape(lo.matrixData))
	}
	if lo.copies > 1 {
		fmt.Fprintf(&b, "^PQ%d\n", lo.copies)
	}
	b.WriteString("^XZ\n")
	return []byte(b.String())
}

// png renders the layout as a PNG (Renderer.PNG).
func (lo layout) png() ([]byte, error) {
	img := image.NewGray(image.Rect(0, 0, Width, Height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for _, f := range append(lo.fields, lo.human) {
		if err := drawField(img, f); err != nil {
			return nil, err
		}
	}
	x := barX
	for _, bar := range lo.bar.Bars() {
		if bar {
			draw.Draw(img, image.Rect(x, lo.barY, x+barModule, lo.barY+lo.barHeight), image.Black, image.Point{}, draw.Src)
		}
		x += barModule
	}
	m, err := barcode.Scale(lo.code, lo.code.Bounds().Dx()*lo.module, lo.code.Bounds().Dy()*lo.module)
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
