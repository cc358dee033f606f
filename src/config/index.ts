export { ConfigSchema, CONFIG_FILE, loadConfig, parseConfig, saveConfig, parseDuration, pick } from './config.ts'
export type { Config } from './config.ts'
