/** BIP-39 mnemonics (English wordlist) on ethers' audited implementation. */
import { LangEn, Mnemonic } from 'ethers'
import { randomBytes } from '../crypto/index.ts'
import { identityError, IdentityErrorCode } from './errors.ts'

export type MnemonicWords = 12 | 24
const VALID_WORD_COUNTS = new Set([12, 15, 18, 21, 24])

/** A new random BIP-39 mnemonic of 12 (128-bit) or 24 (256-bit) words. */
export function generateMnemonic (words: MnemonicWords = 12): string {
  if (words !== 12 && words !== 24) {
    throw identityError(IdentityErrorCode.INVALID_MNEMONIC, 'a new mnemonic has 12 or 24 words', { words })
  }
  const entropy = randomBytes(words === 12 ? 16 : 32)
  try {
    return Mnemonic.fromEntropy(entropy).phrase
  } finally {
    entropy.fill(0)
  }
}

/**
 * Normalise and check a mnemonic: NFKD, lower case, single spaces, no leading/trailing whitespace.
 * Returns the normalised phrase. Errors (never containing the words):
 * - `INVALID_MNEMONIC` for a wrong word count or a word not in the BIP-39 English list
 *   (info.position: 1-based position of the first unknown word);
 * - `INVALID_MNEMONIC_CHECKSUM` when every word is valid but the checksum does not match.
 */
export function parseMnemonic (phrase: string): string {
  if (typeof phrase !== 'string') {
    throw identityError(IdentityErrorCode.INVALID_MNEMONIC, 'the mnemonic must be text')
  }
  const words = phrase.normalize('NFKD').toLowerCase().trim().split(/\s+/u).filter(w => w.length > 0)
  if (!VALID_WORD_COUNTS.has(words.length)) {
    throw identityError(IdentityErrorCode.INVALID_MNEMONIC, `a mnemonic has 12, 15, 18, 21 or 24 words, not ${words.length}`, { words: words.length })
  }
  const wordlist = LangEn.wordlist()
  for (let i = 0; i < words.length; i++) {
    if (wordlist.getWordIndex(words[i]) < 0) {
      throw identityError(IdentityErrorCode.INVALID_MNEMONIC, `word ${i + 1} of the mnemonic is not a BIP-39 English word`, { position: i + 1 })
    }
  }
  const normalized = words.join(' ')
  if (!Mnemonic.isValidMnemonic(normalized, wordlist)) {
    throw identityError(IdentityErrorCode.INVALID_MNEMONIC_CHECKSUM, 'the mnemonic checksum does not match: a word is probably mistyped or out of order')
  }
  return normalized
}

/** True when `phrase` is a valid mnemonic (after normalisation). */
export function isValidMnemonic (phrase: string): boolean {
  try {
    parseMnemonic(phrase)
    return true
  } catch {
    return false
  }
}
