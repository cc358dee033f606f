// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title tokenim BackupRegistry
/// @notice Anchors tokenim backups on chain: per owner, a strictly increasing version and the
///         sha2-256 digest of every version's root block, readable without logs.
/// @dev The root CID of a backup is NOT stored or logged: it is derived from the digest. The backup
///      format fixes the root block as CIDv1, codec dag-cbor (0x71), multihash sha2-256 (0x12, 32
///      bytes), so `CID = CIDv1(0x71, multihash(0x12, digest))`. Storing only the 32-byte digest
///      keeps every anchor to one new storage slot.
///
///      Storage layout (gas): one slot per owner packs the latest version (uint64, low bits) and the
///      timestamp of that anchor (uint64, next bits); one slot per (owner, version) holds the digest,
///      keyed by `owner << 64 | version` (a single keccak instead of a nested mapping).
contract BackupRegistry {
    /// @notice Emitted for every anchored version.
    /// @param owner the wallet whose backup this is (indexed)
    /// @param version the new version (indexed)
    /// @param digest sha2-256 digest of the root block (root CID = CIDv1 dag-cbor over this digest)
    /// @param timestamp block timestamp of the anchor
    event BackupAnchored(address indexed owner, uint64 indexed version, bytes32 digest, uint64 timestamp);

    /// @notice The given version is not greater than the owner's latest version (rollback or replay).
    error VersionNotIncreasing(uint64 latest, uint64 given);
    /// @notice The digest is zero (zero means "no backup" in the views).
    error ZeroDigest();
    /// @notice The relayed signature's deadline has passed.
    error SignatureExpired(uint256 deadline);
    /// @notice The relayed signature is malformed, malleable or not made by `owner`.
    error InvalidSignature();

    /// @notice EIP-712 type of a relayed anchor.
    bytes32 public constant ANCHOR_TYPEHASH =
        keccak256("Anchor(address owner,uint64 version,bytes32 digest,uint256 deadline)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("tokenim BackupRegistry");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @dev Upper bound of `s` for non-malleable ECDSA signatures (secp256k1n / 2), per EIP-2.
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    uint256 private immutable CACHED_CHAIN_ID;
    bytes32 private immutable CACHED_DOMAIN_SEPARATOR;

    /// @dev owner => latest version (bits 0..63) | timestamp of that anchor (bits 64..127)
    mapping(address => uint256) private _head;
    /// @dev (owner << 64 | version) => digest
    mapping(uint256 => bytes32) private _digest;

    constructor() {
        CACHED_CHAIN_ID = block.chainid;
        CACHED_DOMAIN_SEPARATOR = _buildDomainSeparator();
    }

    /// @notice Anchor a new backup version for `msg.sender`.
    /// @param version must be greater than the sender's latest version
    /// @param digest sha2-256 digest of the backup's root block, non-zero
    function anchor(uint64 version, bytes32 digest) external {
        _anchor(msg.sender, version, digest);
    }

    /// @notice Anchor a new backup version for `owner`, authorised by the owner's EIP-712 signature,
    ///         so that a relayer (`msg.sender`, anyone) pays the gas.
    /// @dev Replay protection needs no nonce: the signature covers owner, version, digest and
    ///      deadline, and an owner's version is strictly increasing, so once a signed anchor is
    ///      accepted the same signature (same version) can only fail with VersionNotIncreasing.
    ///      A signature for a version that was overtaken before it was relayed is likewise dead.
    ///      The domain includes chainId and this contract's address (no cross-chain/contract replay).
    /// @param signature 65 bytes r ‖ s ‖ v, with s in the lower half of the curve order
    function anchorWithSig(address owner, uint64 version, bytes32 digest, uint256 deadline, bytes calldata signature)
        external
    {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 32))
            v := byte(0, calldataload(add(signature.offset, 64)))
        }
        if (uint256(s) > HALF_N) revert InvalidSignature();
        bytes32 structHash = keccak256(abi.encode(ANCHOR_TYPEHASH, owner, version, digest, deadline));
        bytes32 hash = keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
        // ecrecover returns address(0) for an invalid signature (including v not in {27, 28})
        address signer = ecrecover(hash, v, r, s);
        if (signer == address(0) || signer != owner) revert InvalidSignature();
        _anchor(owner, version, digest);
    }

    /// @notice The owner's latest anchor. All zero when the owner never anchored.
    function latest(address owner) external view returns (uint64 version, bytes32 digest, uint64 timestamp) {
        uint256 head = _head[owner];
        version = uint64(head);
        timestamp = uint64(head >> 64);
        digest = _digest[_key(owner, version)];
    }

    /// @notice The digest anchored for (owner, version); zero when there is none.
    function digestOf(address owner, uint64 version) external view returns (bytes32) {
        return _digest[_key(owner, version)];
    }

    /// @notice The EIP-712 domain separator (name "tokenim BackupRegistry", version "1").
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == CACHED_CHAIN_ID ? CACHED_DOMAIN_SEPARATOR : _buildDomainSeparator();
    }

    function _anchor(address owner, uint64 version, bytes32 digest) private {
        if (digest == bytes32(0)) revert ZeroDigest();
        uint64 current = uint64(_head[owner]);
        if (version <= current) revert VersionNotIncreasing(current, version);
        uint64 timestamp = uint64(block.timestamp);
        _head[owner] = uint256(version) | (uint256(timestamp) << 64);
        _digest[_key(owner, version)] = digest;
        emit BackupAnchored(owner, version, digest, timestamp);
    }

    function _key(address owner, uint64 version) private pure returns (uint256) {
        return (uint256(uint160(owner)) << 64) | uint256(version);
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }
}
