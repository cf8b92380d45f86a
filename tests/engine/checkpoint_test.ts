/** Safetensors checkpoints: exact round trip, the byte layout safetensors.torch expects, and clear load errors. */
import assert from "node:assert/strict";
import { CheckpointError, loadInto, loadSafetensors, saveSafetensors } from "../../engine/checkpoint.ts";
import { Tensor } from "../../engine/index.ts";
import { gpuReady, randArray } from "../helpers.ts";

Deno.test("checkpoint: safetensors round trip keeps names, shapes, values and metadata; layout is standard", async () => {
  await gpuReady();
  const dir = await Deno.makeTempDir();
  const a = Tensor.fromData(Float32Array.from(randArray(6, 1)), [2, 3], { persistent: true });
  const b = Tensor.fromData(Float32Array.from(randArray(5, 2)), [5], { persistent: true });
  await saveSafetensors(`${dir}/m.safetensors`, { "enc.weight": a, "enc.bias": b }, { step: "7" });
  const bytes = await Deno.readFile(`${dir}/m.safetensors`);
  const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + hlen) % 8, 0, "data must start 8-byte aligned");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  assert.deepEqual(header["enc.bias"], { dtype: "F32", shape: [5], data_offsets: [0, 20] });
  const { tensors, metadata } = await loadSafetensors(`${dir}/m.safetensors`);
  assert.deepEqual(metadata, { step: "7" });
  assert.deepEqual(tensors.get("enc.weight")!.data, await a.read());
  const c = Tensor.fromData(new Float32Array(6), [2, 3], { persistent: true });
  assert.deepEqual(loadInto({ "enc.weight": c }, tensors), ["enc.bias"]);
  assert.deepEqual(await c.read(), await a.read());
  const wrong = Tensor.fromData(new Float32Array(6), [3, 2], { persistent: true });
  assert.throws(
    () => loadInto({ "enc.weight": wrong, "dec.weight": c }, tensors),
    (e: Error) =>
      e instanceof CheckpointError && /missing 1: dec.weight/.test(e.message) &&
      /enc.weight \(2, 3\) != expected \(3, 2\)/.test(e.message),
  );
  await Deno.writeTextFile(`${dir}/bad.safetensors`, "not a checkpoint");
  await assert.rejects(loadSafetensors(`${dir}/bad.safetensors`), CheckpointError);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "bad.safetensors",
    "m.safetensors",
  ]);
  for (const t of [a, b, c, wrong]) t.dispose();
  await Deno.remove(dir, { recursive: true });
});

/** A safetensors file written by hand (no GPU): one F32 tensor "w" of shape [n]. */
function safetensorsBytes(n: number): Uint8Array {
  let json = JSON.stringify({
    __metadata__: { step: "1" },
    w: { dtype: "F32", shape: [n], data_offsets: [0, 4 * n] },
  });
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + 4 * n);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

Deno.test("checkpoint: a truncated file is named and called truncated, not 'Invalid typed array length'", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/checkpoint.safetensors`;
    const full = safetensorsBytes(1024);
    await Deno.writeFile(path, full);
    assert.equal((await loadSafetensors(path)).tensors.get("w")!.data.length, 1024);
    for (const cut of [full.length - 100, 40, 4]) {
      await Deno.writeFile(path, full.subarray(0, cut));
      await assert.rejects(
        loadSafetensors(path),
        (e: Error) =>
          e instanceof CheckpointError && e.message.startsWith(`${path} is truncated (${cut} bytes`) &&
          !e.message.includes("\n"),
        `cut at ${cut}`,
      );
    }
    const bad = safetensorsBytes(4);
    const json = new TextDecoder().decode(bad.subarray(8, bad.length - 16)).replace("[0,16]", "[0,12]");
    const fixed = new Uint8Array(bad.length);
    fixed.set(bad);
    fixed.set(new TextEncoder().encode(json), 8);
    await Deno.writeFile(path, fixed);
    await assert.rejects(
      loadSafetensors(path),
      /tensor w of shape \(4\) F32 needs 16 bytes, its data_offsets span 12/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a save that fails (here the rename) leaves no temp file behind", async () => {
  await gpuReady();
  const dir = await Deno.makeTempDir();
  const path = `${dir}/x.safetensors`;
  await Deno.mkdir(path); // renaming a file onto a directory fails
  const t = Tensor.fromData([1, 2, 3], [3], { persistent: true });
  try {
    await assert.rejects(saveSafetensors(path, { t }));
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(left, ["x.safetensors"], `left behind: ${left}`);
  } finally {
    t.dispose();
  }
});
