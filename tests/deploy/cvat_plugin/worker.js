// The decoder side of CVAT's SAM plugin (cvat-ui/plugins/sam/src/ts/inference.worker.ts), as
// this test runs it: a dedicated worker with onnxruntime-web's WebAssembly backend, whose
// 'decode' builds the decoder's feeds from the page's arrays the way the plugin's worker does
// (embedding 1x256x64x64, points 1xNx2, labels 1xN, orig_im_size [H, W], a zero 1x1x256x256
// mask_input with has_mask_input 0 unless the previous low-res mask is given) and answers with
// the cropped mask, the low-res mask and the box xtl, ytl, xbr, ybr.
importScripts("/assets/ort.wasm.min.js");
ort.env.wasm.wasmPaths = "/assets/";

let decoder = null;

onmessage = async (event) => {
  const { action, payload } = event.data;
  try {
    if (action === "init") {
      decoder = await ort.InferenceSession.create(payload.decoderURL);
      postMessage({ action });
      return;
    }
    const feeds = {
      image_embeddings: new ort.Tensor("float32", payload.imageEmbeddings, [1, 256, 64, 64]),
      point_coords: new ort.Tensor("float32", payload.pointCoords, [1, payload.pointCoords.length / 2, 2]),
      point_labels: new ort.Tensor("float32", payload.pointLabels, [1, payload.pointLabels.length]),
      orig_im_size: new ort.Tensor("float32", [payload.height, payload.width]),
      mask_input: new ort.Tensor(
        "float32", payload.maskInput ?? new Float32Array(256 * 256), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor("float32", [payload.maskInput ? 1 : 0]),
    };
    const started = performance.now();
    const results = await decoder.run(feeds);
    const milliseconds = performance.now() - started;
    const [xtl, ytl, xbr, ybr, mask, lowResMask] = await Promise.all(
      ["xtl", "ytl", "xbr", "ybr", "masks", "low_res_masks"].map((name) => results[name].getData()));
    postMessage({
      action,
      payload: {
        mask, lowResMask, maskDims: results.masks.dims, milliseconds,
        xtl: Number(xtl[0]), ytl: Number(ytl[0]), xbr: Number(xbr[0]), ybr: Number(ybr[0]),
      },
    });
  } catch (error) {
    postMessage({ action, error: String(error && error.message ? error.message : error) });
  }
};
