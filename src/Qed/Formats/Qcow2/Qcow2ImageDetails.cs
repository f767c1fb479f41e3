using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The nested parts of qemu-img's format-specific data for qcow2 that live outside cluster 0: the persistent bitmaps
/// (from the bitmap directory) and the LUKS header (<c>encrypt</c>, described by <see cref="Qcow2LuksDescription"/>), read at open and described in qemu-img 7.2's key order.
/// </summary>
/// <remarks>Both are for <c>info</c> only: a part that cannot be parsed is left out rather than failing the open.</remarks>
internal static class Qcow2ImageDetails
{
    private const int BitmapEntryFixedSize = 24;
    private const int BitmapFlagsOffset = 12;
    private const int BitmapGranularityOffset = 17;
    private const int BitmapNameSizeOffset = 18;
    private const int BitmapExtraSizeOffset = 20;
    private const uint BitmapInUse = 1;
    private const uint BitmapAuto = 2;

    /// <summary>Reads the LUKS header the encryption extension points at, or null when there is none.</summary>
    public static async ValueTask<byte[]?> ReadLuksHeaderAsync(FileAccessor file, Qcow2Extensions extensions, bool useAsync, CancellationToken cancellationToken)
    {
        if (extensions.CryptoHeader is not { } crypto || crypto.Offset > long.MaxValue - Qcow2LuksDescription.HeaderLength)
        {
            return null;
        }
        byte[] header = new byte[Qcow2LuksDescription.HeaderLength];
        await file.ReadZeroPaddedAsync(header, (long)crypto.Offset, useAsync, cancellationToken).ConfigureAwait(false);
        return header;
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

    /// <summary>The <c>encrypt</c> object (<see cref="Qcow2LuksDescription"/>); null when the LUKS header was not read or is unusable.</summary>
    public static ImageDetail? Encrypt(uint cryptMethod, byte[]? luks) =>
        cryptMethod == 1 ? Qcow2LuksDescription.Aes : luks is null ? null : Qcow2LuksDescription.Describe(luks);

    private static ImageDetail Number(string name, ulong value) => new(name, value.ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number);

}

/// <summary>One persistent bitmap as <c>info</c> lists it.</summary>
internal readonly record struct Qcow2BitmapInfo(string Name, byte GranularityBits, uint Flags);
