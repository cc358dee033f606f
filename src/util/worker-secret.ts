/**
 * A secret handed to a worker thread in shared memory. `workerData` is otherwise serialized: the bytes are
 * copied into a buffer that is freed unwiped, and the worker gets a copy of its own that only it can wipe
 * (a worker terminated before it does never wipes it). In a SharedArrayBuffer there is one copy, seen by
 * both threads: the worker wipes it once it has imported the key, and the owner wipes it when it stops
 * the worker, whether the worker got that far or not.
 */
export function sharedSecret (secret: Uint8Array): Uint8Array {
  const shared = new Uint8Array(new SharedArrayBuffer(secret.byteLength))
  shared.set(secret)
  return shared
}
