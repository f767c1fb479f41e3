using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The nested parts of qemu-img's format-specific data for qcow2 that live outside cluster 0: the persistent bitmaps
/// (from the bitmap directory) and the LUKS header (<c>encrypt</c>), read at open and described in qemu-img 7.2's key order.
/// </summary>
/// <remarks>Both are for <c>info</c> only: a part that cannot be parsed is left out rather than failing the open.</remarks>
internal static class Qcow2ImageDetails
{
    /// <summary>Bytes of a LUKS1 header with its eight key slots.</summary>
    public const int LuksHeaderSize = 592;

    private const int LuksCipherNameOffset = 8;
    private const int LuksCipherModeOffset = 40;
    private const int LuksHashSpecOffset = 72;
    private const int LuksFieldLength = 32;
    private const int LuksPayloadOffsetOffset = 104;
    private const int LuksKeyBytesOffset = 108;
    private const int LuksDigestIterationsOffset = 164;
    private const int LuksUuidOffset = 168;
    private const int LuksUuidLength = 40;
    private const int LuksSlotsOffset = 208;
    private const int LuksSlotSize = 48;
    private const int LuksSlotCount = 8;
    private const uint LuksSlotActive = 0x00AC71F3;
    private const int LuksSectorSize = 512;

    private const int BitmapEntryFixedSize = 24;
    private const int BitmapFlagsOffset = 12;
    private const int BitmapGranularityOffset = 17;
    private const int BitmapNameSizeOffset = 18;
    private const int BitmapExtraSizeOffset = 20;
    private const uint BitmapInUse = 1;
    private const uint BitmapAuto = 2;

    private static ReadOnlySpan<byte> LuksMagic => [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]; // "LUKS" 0xBA 0xBE

    /// <summary>Reads the LUKS header the encryption extension points at, or null when there is none.</summary>
    public static async ValueTask<byte[]?> ReadLuksHeaderAsync(FileAccessor file, Qcow2Extensions extensions, bool useAsync, CancellationToken cancellationToken)
    {
        if (extensions.CryptoHeader is not { } crypto || crypto.Offset > long.MaxValue - LuksHeaderSize)
        {
            return null;
        }
        byte[] header = new byte[LuksHeaderSize];
        await file.ReadZeroPaddedAsync(header, (long)crypto.Offset, useAsync, cancellationToken).ConfigureAwait(false);
        return header.AsSpan().StartsWith(LuksMagic) ? header : null;
    }

    /// <summary>Reads the bitmap directory (at most 64 MiB - 1 KiB, bounded by the extension's rules) into what <c>info</c> lists.</summary>
    public static async ValueTask<IReadOnlyList<Qcow2BitmapInfo>> ReadBitmapsAsync(FileAccessor file, Qcow2Extensions extensions, bool useAsync, CancellationToken cancellationToken)
    {
        if (extensions.Bitmaps is not { } bitmaps || bitmaps.DirectoryOffset > long.MaxValue - Qcow2Extensions.MaxBitmapDirectorySize)
        {
            return [];
        }
        byte[] directory = new byte[bitmaps.DirectorySize];
        await file.ReadZeroPaddedAsync(directory, (long)bitmaps.DirectoryOffset, useAsync, cancellationToken).ConfigureAwait(false);
        var list = new List<Qcow2BitmapInfo>();
        int at = 0;
        for (uint i = 0; i < bitmaps.Count; i++)
        {
            if (directory.Length - at < BitmapEntryFixedSize)
            {
                return [];
            }
            var entry = directory.AsSpan(at);
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(entry[BitmapNameSizeOffset..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(entry[BitmapExtraSizeOffset..]);
            long size = BitmapEntryFixedSize + (long)extraSize + nameSize;
            if (size > directory.Length - at)
            {
                return [];
            }
            string name = Encoding.UTF8.GetString(entry.Slice(BitmapEntryFixedSize + (int)extraSize, nameSize));
            list.Add(new Qcow2BitmapInfo(name, entry[BitmapGranularityOffset], BinaryPrimitives.ReadUInt32BigEndian(entry[BitmapFlagsOffset..])));
            at += (int)((size + 7) & ~7L);
        }
        return list;
    }

    /// <summary>The <c>bitmaps</c> list: per bitmap its flags, name and granularity.</summary>
    public static ImageDetail Bitmaps(IReadOnlyList<Qcow2BitmapInfo> bitmaps) => new("bitmaps", "", ImageDetailKind.List)
    {
        Children = bitmaps.Select(b =>
        {
            var flags = new List<ImageDetail>();
            if ((b.Flags & BitmapInUse) != 0)
            {
                flags.Add(new("", "in-use", ImageDetailKind.Text));
            }
            if ((b.Flags & BitmapAuto) != 0)
            {
                flags.Add(new("", "auto", ImageDetailKind.Text));
            }
            return new ImageDetail("", "", ImageDetailKind.Object)
            {
                Children =
                [
                    new("flags", "", ImageDetailKind.List) { Children = flags },
                    new("name", b.Name, ImageDetailKind.Text),
                    Number("granularity", b.GranularityBits < 64 ? 1UL << b.GranularityBits : 0),
                ],
            };
        }).ToArray(),
    };

    /// <summary>The <c>encrypt</c> object: <c>format: aes</c> for the legacy method, the LUKS header's fields for LUKS; null when the LUKS header is unreadable.</summary>
    public static ImageDetail? Encrypt(uint cryptMethod, byte[]? luks)
    {
        if (cryptMethod == 1)
        {
            return new("encrypt", "", ImageDetailKind.Object) { Children = [new("format", "aes", ImageDetailKind.Text)] };
        }
        if (luks is null)
        {
            return null;
        }
        var h = luks.AsSpan();
        string cipher = CString(h.Slice(LuksCipherNameOffset, LuksFieldLength));
        string modeSpec = CString(h.Slice(LuksCipherModeOffset, LuksFieldLength));
        string hash = CString(h.Slice(LuksHashSpecOffset, LuksFieldLength));
        uint keyBytes = BinaryPrimitives.ReadUInt32BigEndian(h[LuksKeyBytesOffset..]);
        int dash = modeSpec.IndexOf('-', StringComparison.Ordinal);
        string mode = dash < 0 ? modeSpec : modeSpec[..dash];
        string ivgen = dash < 0 ? "" : modeSpec[(dash + 1)..];
        // XTS keys are two keys of the cipher's size.
        uint cipherBits = (mode == "xts" ? keyBytes / 2 : keyBytes) * 8;
        var slots = new List<ImageDetail>();
        for (int i = 0; i < LuksSlotCount; i++)
        {
            var slot = h.Slice(LuksSlotsOffset + i * LuksSlotSize, LuksSlotSize);
            bool active = BinaryPrimitives.ReadUInt32BigEndian(slot) == LuksSlotActive;
            ulong keyOffset = (ulong)BinaryPrimitives.ReadUInt32BigEndian(slot[40..]) * LuksSectorSize;
            slots.Add(new ImageDetail("", "", ImageDetailKind.Object)
            {
                Children = active
                    ? [Boolean("active", true), Number("iters", BinaryPrimitives.ReadUInt32BigEndian(slot[4..])), Number("key-offset", keyOffset), Number("stripes", BinaryPrimitives.ReadUInt32BigEndian(slot[44..]))]
                    : [Boolean("active", false), Number("key-offset", keyOffset)],
            });
        }
        return new("encrypt", "", ImageDetailKind.Object)
        {
            Children =
            [
                new("ivgen-alg", ivgen, ImageDetailKind.Text),
                new("hash-alg", hash, ImageDetailKind.Text),
                new("cipher-alg", $"{cipher}-{cipherBits.ToString(CultureInfo.InvariantCulture)}", ImageDetailKind.Text),
                new("uuid", CString(h.Slice(LuksUuidOffset, LuksUuidLength)), ImageDetailKind.Text),
                new("format", "luks", ImageDetailKind.Text),
                new("cipher-mode", mode, ImageDetailKind.Text),
                new("slots", "", ImageDetailKind.List) { Children = slots },
                Number("payload-offset", (ulong)BinaryPrimitives.ReadUInt32BigEndian(h[LuksPayloadOffsetOffset..]) * LuksSectorSize),
                Number("master-key-iters", BinaryPrimitives.ReadUInt32BigEndian(h[LuksDigestIterationsOffset..])),
            ],
        };
    }

    private static ImageDetail Number(string name, ulong value) => new(name, value.ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number);

    private static ImageDetail Boolean(string name, bool value) => new(name, value ? "true" : "false", ImageDetailKind.Boolean);

    private static string CString(ReadOnlySpan<byte> bytes)
    {
        int end = bytes.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? bytes : bytes[..end]);
    }
}

/// <summary>One persistent bitmap as <c>info</c> lists it.</summary>
internal readonly record struct Qcow2BitmapInfo(string Name, byte GranularityBits, uint Flags);
