export { openStore, repairStore } from '../../src/store/index.ts'
export { isTokenimError } from '../../src/errors.ts'
