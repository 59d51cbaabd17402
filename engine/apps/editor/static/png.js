// Greyscale PNG encoding (8- or 16-bit) for label and instance maps: a canvas can only write
// 8-bit RGBA, and instance ids (class*1000+k) need 16 bits. Compression: the browser's zlib.
"use strict";

const PNG = (() => {
  const CRC_TABLE = new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function chunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  }

  async function zlib(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // values: a typed array of width*height grey values; bits: 8 or 16. Returns a PNG Blob.
  async function encodeGrey(values, width, height, bits) {
    const bpp = bits / 8;
    const stride = 1 + width * bpp;
    const raw = new Uint8Array(stride * height);  // filter byte 0 (none) per row
    for (let y = 0; y < height; y++) {
      const row = y * stride + 1;
      const src = y * width;
      if (bits === 8) {
        raw.set(values.subarray(src, src + width), row);
      } else {
        for (let x = 0; x < width; x++) {
          const v = values[src + x];
          raw[row + 2 * x] = v >>> 8;
          raw[row + 2 * x + 1] = v & 0xff;
        }
      }
    }
    const header = new Uint8Array(13);
    const hv = new DataView(header.buffer);
    hv.setUint32(0, width);
    hv.setUint32(4, height);
    header[8] = bits;
    header[9] = 0;  // greyscale
    const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    const parts = [signature, chunk("IHDR", header), chunk("IDAT", await zlib(raw)),
                   chunk("IEND", new Uint8Array(0))];
    return new Blob(parts, { type: "image/png" });
  }

  return { encodeGrey };
})();
