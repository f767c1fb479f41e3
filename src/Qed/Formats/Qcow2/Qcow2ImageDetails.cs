using System.Globalization;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The nested parts of qemu-img's format-specific data for qcow2 that live outside cluster 0: the persistent bitmaps
/// (from the bitmap directory) and the LUKS header (<c>encrypt</c>, described by <see cref="Qcow2LuksDescription"/>), read at open and described in qemu-img 7.2's key order.
/// </summary>
/// <remarks>The bitmaps are read and held to QEMU's rules by <see cref="Qcow2BitmapDirectory"/> at open; the LUKS header is for <c>info</c> only and left out when it cannot be parsed.</remarks>
internal static class Qcow2ImageDetails
{
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

    /// <summary>The <c>bitmaps</c> list: per bitmap its flags, name and granularity.</summary>
    public static ImageDetail Bitmaps(IReadOnlyList<Qcow2BitmapEntry> bitmaps) => new("bitmaps", "", ImageDetailKind.List)
    {
        Children = bitmaps.Select(b =>
        {
            var flags = new List<ImageDetail>();
            if ((b.Flags & Qcow2BitmapDirectory.InUseFlag) != 0)
            {
                flags.Add(new("", "in-use", ImageDetailKind.Text));
            }
            if ((b.Flags & Qcow2BitmapDirectory.AutoFlag) != 0)
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
