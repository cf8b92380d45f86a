/** The op library: one import for models and tests. Also wires the few ops autograd needs. */
import { installGradOps } from "../autograd.ts";
import { add, addInPlace, copy, ones, zeros } from "./elementwise.ts";

export * from "./elementwise.ts";
export { max, mean, sum, variance } from "./reduce.ts";
export { concat, pad, permute, reshape, slice, transpose } from "./shape.ts";
export { linear, matmul } from "./matmul.ts";
export { layer_norm, rms_norm, softmax } from "./norm.ts";

installGradOps({ add, addInPlace, copy, ones, zeros });
export { conv2d, conv3d, type ConvOptions } from "./conv.ts";
export { depth_to_space, pixel_shuffle, pixel_unshuffle, space_to_depth } from "./space_to_depth.ts";
export { channel_norm } from "./channel_norm.ts";
export { gate, modulate } from "./modulation.ts";
export { attention } from "./attention.ts";
export { clearFftCache, fftFits, fftn } from "./fft.ts";
