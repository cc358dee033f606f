import assert from 'node:assert/strict'
import { mkdtemp, rm, readFile, readdir, stat, chmod, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../../src/util/fs.ts'

describe('writeFileAtomic', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-fs-')) })
  afterEach(async () => {
    await chmod(dir, 0o700).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  it('writes bytes, strings and streams with mode 0600', async () => {
    await writeFileAtomic(join(dir, 'a'), 'hello')
    async function * chunks (): AsyncGenerator<Uint8Array> { yield Buffer.from('he'); yield Buffer.from('llo') }
    await writeFileAtomic(join(dir, 'b'), chunks())
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), 'hello')
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'hello')
    assert.equal((await stat(join(dir, 'a'))).mode & 0o777, 0o600)
  })

  it('exclusive refuses an existing file and leaves it intact', async () => {
    await writeFile(join(dir, 'a'), 'old')
    await assert.rejects(writeFileAtomic(join(dir, 'a'), 'new', { exclusive: true }), { code: 'FILE_EXISTS' })
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), 'old')
    assert.deepEqual(await readdir(dir), ['a'])
  })

  it('a failing stream leaves no file and no temporary', async () => {
    async function * failing (): AsyncGenerator<Uint8Array> { yield Buffer.from('part'); throw new Error('disk went away') }
    await assert.rejects(writeFileAtomic(join(dir, 'c'), failing()), /disk went away/)
    assert.deepEqual(await readdir(dir), [])
  })

  it('an unwritable directory gives PERMISSION_DENIED (or the write is refused) and no file', async function () {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions; a missing directory exercises the same error path
      await assert.rejects(writeFileAtomic(join(dir, 'missing', 'x'), 'data'), { code: 'NO_SUCH_DIRECTORY' })
      return
    }
    await chmod(dir, 0o500)
    await assert.rejects(writeFileAtomic(join(dir, 'x'), 'data'), { code: 'PERMISSION_DENIED' })
  })
})
