// Single-channel PNG files (8- or 16-bit grayscale), which a canvas cannot write (it writes
// RGBA). The pixels are deflated by the browser's CompressionStream ("deflate" is the zlib
// format PNG's IDAT chunk holds); the rest is PNG's chunk framing (RFC 2083).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One chunk: length, type, data, CRC of type and data. */
function chunk(type, data) {
  const bytes = new Uint8Array(12 + data.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, data.length);
  bytes.set([...type].map((c) => c.charCodeAt(0)), 4);
  bytes.set(data, 8);
  view.setUint32(8 + data.length, crc32(bytes.subarray(4, 8 + data.length)));
  return bytes;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A grayscale PNG of `values` (row-major, width * height).
 * @param {Uint8Array | Uint16Array} values 0..255, or 0..65535 with bitDepth 16.
 * @param {8 | 16} bitDepth
 * @returns {Promise<Blob>}
 */
export async function grayPng(values, width, height, bitDepth = 8) {
  if (values.length !== width * height) throw new Error("grayPng: values are not width * height");
  const bytesPerPixel = bitDepth / 8;
  const stride = 1 + width * bytesPerPixel; // each row starts with its filter type, 0 (none)
  const raw = new Uint8Array(height * stride);
  const rows = new DataView(raw.buffer);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * stride + 1 + x * bytesPerPixel;
      if (bitDepth === 16) rows.setUint16(at, values[y * width + x]);
      else raw[at] = values[y * width + x];
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([bitDepth, 0, 0, 0, 0], 8); // colour type 0 (grayscale), deflate, no interlace
  const parts = [
    new Uint8Array(SIGNATURE),
    chunk("IHDR", header),
    chunk("IDAT", await deflate(raw)),
    chunk("IEND", new Uint8Array(0)),
  ];
  return new Blob(parts, { type: "image/png" });
}
