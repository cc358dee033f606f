import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
export async function benchStartup (_scale: Scale, _rec: Recorder): Promise<void> {}
