// render.mjs renders ZPL files to PNG with zpl-renderer-js, the third
// party that keeps station/label's preview honest:
// station/label/zplrenderer_test.go renders every label template's ZPL
// with it and compares the barcodes and text with the station's own PNG.
//
//	node render.mjs IN.zpl OUT.png [IN.zpl OUT.png ...]
//
// Each label is rendered 4x2 inches (101.6 x 50.8 mm) at 8 dots/mm, the
// station's 203 dpi, so one pixel is one printer dot. One process renders
// them all: loading the renderer (zebrash compiled to WebAssembly, ~8 MB)
// takes longer than a label.
//
// stdout carries nothing; any failure exits 1 with "render.mjs: <reason>"
// on stderr.
//
// Written for Node 18 (Debian 12's nodejs) and later: Go's wasm_exec needs
// globalThis.crypto, which Node 18 only has as node:crypto's webcrypto.

import { webcrypto } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

globalThis.crypto ??= webcrypto;

const WIDTH_MM = 101.6;
const HEIGHT_MM = 50.8;
const DOTS_PER_MM = 8;

try {
	const args = process.argv.slice(2);
	if (args.length === 0 || args.length % 2 !== 0) {
		throw new Error("usage: node render.mjs IN.zpl OUT.png [IN.zpl OUT.png ...]");
	}
	// Imported here, not above, so that crypto is in place when the Go
	// runtime starts.
	const { ready } = await import("zpl-renderer-js");
	const { api } = await ready;
	for (let i = 0; i < args.length; i += 2) {
		const zpl = readFileSync(args[i], "utf8");
		let png;
		try {
			png = await api.zplToBase64Async(zpl, WIDTH_MM, HEIGHT_MM, DOTS_PER_MM);
		} catch (err) {
			throw new Error(`${args[i]}: ${err?.message ?? err}`);
		}
		writeFileSync(args[i + 1], Buffer.from(png, "base64"));
	}
} catch (err) {
	process.stderr.write(`render.mjs: ${err?.message ?? err}\n`);
	process.exit(1);
}
