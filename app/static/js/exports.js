// What the page saves: a mask as an 8-bit PNG, the objects as COCO JSON and as a label image.
import { grayPng } from "./png.js";

/** A single-channel 8-bit PNG of a mask: 255 inside, 0 outside. */
export function maskPng(mask, width, height) {
  return grayPng(mask.map((v) => (v ? 255 : 0)), width, height);
}

/**
 * A label image: pixel value k + 1 where objects[k]'s mask is (later objects on top), 0
 * elsewhere; the value is also the object's annotation id in cocoJson. 8-bit up to 255
 * objects, 16-bit beyond.
 * @param {{mask: Uint8Array}[]} objects
 */
export function labelPng(objects, width, height) {
  const wide = objects.length > 255;
  const values = wide ? new Uint16Array(width * height) : new Uint8Array(width * height);
  objects.forEach(({ mask }, k) => {
    for (let i = 0; i < values.length; i++) if (mask[i]) values[i] = k + 1;
  });
  return grayPng(values, width, height, wide ? 16 : 8);
}

/**
 * A COCO-format dataset of one image: one annotation per object, its label as the category
 * (categories numbered in order of first use), its mask as the service's COCO RLE.
 * @param {{label: string, segmentation: {size: number[], counts: string}, area: number,
 *   bbox: number[], score: number}[]} objects
 */
export function cocoJson(fileName, width, height, objects) {
  const labels = [...new Set(objects.map((o) => o.label))];
  return {
    info: { description: "RepViT-SAM web demo", date_created: new Date().toISOString() },
    images: [{ id: 1, file_name: fileName, width, height }],
    categories: labels.map((name, i) => ({ id: i + 1, name })),
    annotations: objects.map((o, i) => ({
      id: i + 1,
      image_id: 1,
      category_id: labels.indexOf(o.label) + 1,
      segmentation: o.segmentation,
      area: o.area,
      bbox: o.bbox,
      iscrowd: 0,
      score: o.score,
    })),
  };
}

/** Makes the browser save a Blob under a file name. */
export function download(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
