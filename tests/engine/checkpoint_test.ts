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
