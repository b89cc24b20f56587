// One compute slot of the browser worker: a module Web Worker, started by the runtime, that
// runs one work unit at a time with a JS kernel (docs/protocol.md §16). The runtime starts as
// many as the volunteer's "cores" setting allows and sends each its units.
//
// Runtime -> slot: {id, kernel, spec, config}
// Slot -> runtime: {id, result, seconds} or {id, error}

const KERNELS_URL = new URL("/worker/kernels/", self.location.origin);

self.onmessage = async ({ data: { id, kernel, spec, config } }) => {
  try {
    const module = await import(new URL(`${kernel}.js`, KERNELS_URL));
    const started = performance.now();
    const result = module.run(spec, config);
    self.postMessage({ id, result, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    self.postMessage({ id, error: String(error.message || error) });
  }
};
