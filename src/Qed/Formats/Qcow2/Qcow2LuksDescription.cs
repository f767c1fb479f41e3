using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The <c>encrypt</c> member of qemu-img info's qcow2 format-specific data: <c>{"format": "aes"}</c> for crypt method 1,
/// and for LUKS (crypt method 2) what the LUKS1 header in the crypto area says (cipher, modes, hash, uuid, key slots).
/// Only the plain header is read: nothing is decrypted and no key is needed.
/// </summary>
internal static class Qcow2LuksDescription
{
    /// <summary>Bytes of the LUKS1 header that are described: the fixed part and the eight key slots.</summary>
    public const int HeaderLength = KeySlotsOffset + KeySlotCount * KeySlotLength;

    private const int SectorSize = 512;
    private static ReadOnlySpan<byte> Magic => [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xba, 0xbe];

    // LUKS1 on-disk layout (big-endian, NUL-padded strings).
    private const int VersionOffset = 6;
    private const int CipherNameOffset = 8;
    private const int CipherModeOffset = 40;
    private const int HashSpecOffset = 72;
    private const int NameLength = 32;
    private const int PayloadOffsetOffset = 104;
    private const int KeyBytesOffset = 108;
    private const int MasterKeyIterationsOffset = 164;
    private const int UuidOffset = 168;
    private const int UuidLength = 40;
    private const int KeySlotsOffset = 208;
    private const int KeySlotCount = 8;
    private const int KeySlotLength = 48;
    private const int SlotIterationsOffset = 4;
    private const int SlotKeyOffsetOffset = 40;
    private const int SlotStripesOffset = 44;
    private const uint SlotActive = 0x00AC71F3;

    /// <summary>The <c>encrypt</c> detail of an AES-encrypted image (crypt method 1).</summary>
    public static ImageDetail Aes { get; } = new("encrypt", "", ImageDetailKind.Object) { Children = [Text("format", "aes")] };

    /// <summary>
    /// The <c>encrypt</c> detail for the LUKS header at the start of <paramref name="header"/>, keys in qemu-img's order;
    /// null when the bytes are not a LUKS1 header qemu could use (wrong magic or version, an unknown cipher, mode or hash).
    /// </summary>
    public static ImageDetail? Describe(ReadOnlySpan<byte> header)
    {
        if (header.Length < HeaderLength || !header.StartsWith(Magic) || BinaryPrimitives.ReadUInt16BigEndian(header[VersionOffset..]) != 1)
        {
            return null;
        }
        string cipherName = Field(header, CipherNameOffset, NameLength);
        string cipherMode = Field(header, CipherModeOffset, NameLength);
        string hash = Field(header, HashSpecOffset, NameLength);
        uint keyBytes = BinaryPrimitives.ReadUInt32BigEndian(header[KeyBytesOffset..]);

        // "xts-plain64", "cbc-essiv:sha256": the chaining mode, then the IV generator and its hash.
        int dash = cipherMode.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0)
        {
            return null;
        }
        string mode = cipherMode[..dash];
        string ivgen = cipherMode[(dash + 1)..];
        string? ivgenHash = null;
        int colon = ivgen.IndexOf(':', StringComparison.Ordinal);
        if (colon >= 0)
        {
            ivgenHash = ivgen[(colon + 1)..];
            ivgen = ivgen[..colon];
        }
        // XTS uses two keys of half the size each; the cipher is named by one of them.
        uint cipherKeyBytes = mode == "xts" ? keyBytes / 2 : keyBytes;
        if (mode is not ("ecb" or "cbc" or "xts" or "ctr") || ivgen is not ("plain" or "plain64" or "essiv")
            || !IsHash(hash) || (ivgenHash is not null && !IsHash(ivgenHash)) || CipherAlgorithm(cipherName, cipherKeyBytes) is not { } cipher)
        {
            return null;
        }

        var slots = new List<ImageDetail>(KeySlotCount);
        for (int i = 0; i < KeySlotCount; i++)
        {
            var slot = header.Slice(KeySlotsOffset + i * KeySlotLength, KeySlotLength);
            bool active = BinaryPrimitives.ReadUInt32BigEndian(slot) == SlotActive;
            var members = new List<ImageDetail> { new("active", active ? "true" : "false", ImageDetailKind.Boolean) };
            if (active)
            {
                members.Add(Number("iters", BinaryPrimitives.ReadUInt32BigEndian(slot[SlotIterationsOffset..])));
            }
            members.Add(Number("key-offset", (long)BinaryPrimitives.ReadUInt32BigEndian(slot[SlotKeyOffsetOffset..]) * SectorSize));
            if (active)
            {
                members.Add(Number("stripes", BinaryPrimitives.ReadUInt32BigEndian(slot[SlotStripesOffset..])));
            }
            slots.Add(new ImageDetail("", "", ImageDetailKind.Object) { Children = members });
        }

        var encrypt = new List<ImageDetail>
        {
            Text("ivgen-alg", ivgen),
            Text("hash-alg", hash),
            Text("cipher-alg", cipher),
            Text("uuid", Field(header, UuidOffset, UuidLength)),
        };
        if (ivgenHash is not null)
        {
            encrypt.Add(Text("ivgen-hash-alg", ivgenHash));
        }
        encrypt.Add(Text("format", "luks"));
        encrypt.Add(Text("cipher-mode", mode));
        encrypt.Add(new ImageDetail("slots", "", ImageDetailKind.List) { Children = slots });
        encrypt.Add(Number("payload-offset", (long)BinaryPrimitives.ReadUInt32BigEndian(header[PayloadOffsetOffset..]) * SectorSize));
        encrypt.Add(Number("master-key-iters", BinaryPrimitives.ReadUInt32BigEndian(header[MasterKeyIterationsOffset..])));
        return new ImageDetail("encrypt", "", ImageDetailKind.Object) { Children = encrypt };
    }

    /// <summary>qemu's name of a LUKS cipher with a key of <paramref name="keyBytes"/> bytes, or null when qemu has none.</summary>
    private static string? CipherAlgorithm(string name, uint keyBytes) => (name, keyBytes) switch
    {
        ("aes" or "serpent" or "twofish", 16 or 24 or 32) => string.Create(CultureInfo.InvariantCulture, $"{name}-{keyBytes * 8}"),
        ("cast5", 16) => "cast5-128",
        ("sm4", 16) => "sm4",
        _ => null,
    };

    private static bool IsHash(string name) => name is "md5" or "sha1" or "sha224" or "sha256" or "sha384" or "sha512" or "ripemd160";

    /// <summary>A NUL-padded ASCII field; only printable ASCII survives (the header is untrusted input printed on a terminal).</summary>
    private static string Field(ReadOnlySpan<byte> header, int offset, int length)
    {
        var field = header.Slice(offset, length);
        int end = field.IndexOf((byte)0);
        var text = new StringBuilder();
        foreach (byte b in end < 0 ? field : field[..end])
        {
            text.Append(b is >= 0x20 and < 0x7f ? (char)b : '?');
        }
        return text.ToString();
    }

    private static ImageDetail Text(string name, string value) => new(name, value, ImageDetailKind.Text);

    private static ImageDetail Number(string name, long value) => new(name, value.ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number);
}
