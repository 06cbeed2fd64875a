// Masks: COCO RLE decoding, colours, and overlays drawn on a canvas at the image's size.

/** COCO compressed RLE counts string -> run lengths (pycocotools' rleFrString). */
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/**
 * Decodes {size: [h, w], counts} into a row-major Uint8Array of h*w zeros and ones.
 * RLE runs are column-major (Fortran order), starting with a run of zeros.
 */
export function decodeRle(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let i = 0;
  let value = 0;
  for (const run of rleCounts(rle.counts)) {
    if (value) {
      for (let j = i; j < i + run; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += run;
    value = 1 - value;
  }
  return mask;
}

/** A distinct colour per index (golden-angle hues), as [r, g, b]. */
export function colour(index) {
  const hue = (index * 137.508) % 360;
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** True where a mask pixel touches a pixel outside the mask (4-neighbourhood). */
function isBoundary(mask, w, h, x, y) {
  const i = y * w + x;
  return x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
    !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
}

/**
 * Paints masks onto the overlay canvas: a translucent fill and an opaque outline, both inside
 * the mask, so the overlay's non-transparent pixels are exactly the union of the masks.
 * @param {HTMLCanvasElement} canvas Sized to the image (w x h).
 * @param {{mask: Uint8Array, rgb: number[]}[]} layers Drawn in order, later on top.
 */
export function paintMasks(canvas, layers, fillAlpha = 110) {
  const { width: w, height: h } = canvas;
  const image = new ImageData(w, h);
  const px = image.data;
  for (const { mask, rgb } of layers) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!mask[i]) continue;
        const edge = isBoundary(mask, w, h, x, y);
        px[4 * i] = edge ? 255 : rgb[0];
        px[4 * i + 1] = edge ? 255 : rgb[1];
        px[4 * i + 2] = edge ? 255 : rgb[2];
        px[4 * i + 3] = edge ? 255 : fillAlpha;
      }
    }
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

/** Paints a grayscale edge map (an ImageBitmap) as bright lines whose opacity is the strength. */
export function paintEdges(canvas, bitmap) {
  const { width: w, height: h } = canvas;
  const scratch = new OffscreenCanvas(w, h).getContext("2d");
  scratch.drawImage(bitmap, 0, 0, w, h);
  const edges = scratch.getImageData(0, 0, w, h).data;
  const image = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    image.data.set([255, 235, 59, edges[4 * i]], 4 * i);
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

export function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}
