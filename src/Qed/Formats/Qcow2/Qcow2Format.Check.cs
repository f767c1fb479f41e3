using System.Buffers.Binary;
using Qed.Check;
using Qed.Formats.Qcow2.Check;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>The check of qcow2 images (QCOW2.md §13): read-only, with qemu-img check's counters and messages; no repair.</summary>
internal sealed partial class Qcow2Format
{
    /// <summary>The refusal of any repair mode.</summary>
    internal const string RepairNotSupported = "Repairing qcow2 images is not supported (check without -r)";

    /// <summary>The refusal of an encrypted image.</summary>
    internal const string EncryptedNotChecked = "encrypted qcow2 images are not supported";

    private const uint BitmapsExtension = 0x2385_2875;
    private const uint CryptoExtension = 0x0537_BE77;
    private const int BitmapsExtensionLength = 24;
    private const int CryptoExtensionLength = 16;
    private const ulong BitmapsAutoclearBit = 1;

    /// <inheritdoc />
    public override bool CanCheck => true;

    /// <summary>
    /// Checks the qcow2 image in <paramref name="file"/> (open and locked by the caller): the header is read again with the
    /// check's open rules (rules 14, 17, 18 and 28 are the check's own findings), then <see cref="Qcow2Checker"/> runs.
    /// </summary>
    /// <exception cref="QedException">The header breaks an open rule (QEMU's message), or the file cannot be read.</exception>
    internal static async ValueTask<CheckResult> CheckFileAsync(FileAccessor file, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] head = new byte[Qcow2Header.ReadLength];
        await file.ReadZeroPaddedAsync(head, 0, useAsync, cancellationToken).ConfigureAwait(false);
        var header = Qcow2Header.Parse(head);
        header.Validate(forWriting: false, forCheck: true);
        if (header.CryptMethod != 0)
        {
            // The check would need the key to open the image in QEMU; qed does not decrypt (QCOW2.md §9).
            throw new QedUnsupportedException(EncryptedNotChecked);
        }
        byte[] cluster0 = new byte[header.ClusterSize];
        await file.ReadZeroPaddedAsync(cluster0, 0, useAsync, cancellationToken).ConfigureAwait(false);
        var layout = CheckLayout(header, cluster0);
        return await Qcow2Checker.CheckAsync(file, header, layout, useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>What the check needs from the header extensions (QCOW2.md §3): data file bit, LUKS area, bitmaps in use.</summary>
    private static Qcow2CheckLayout CheckLayout(Qcow2Header header, ReadOnlySpan<byte> cluster0)
    {
        var layout = new Qcow2CheckLayout { HasDataFile = (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0 };
        int end = header.BackingFileOffset != 0 ? (int)header.BackingFileOffset : cluster0.Length;
        for (long position = header.HeaderLength; position + 8 <= end;)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster0[(int)position..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster0[((int)position + 4)..]);
            if (type == 0 || position + 8 + length > end)
            {
                break;
            }
            var data = cluster0.Slice((int)position + 8, (int)length);
            if (type == BitmapsExtension && length == BitmapsExtensionLength && (header.AutoclearFeatures & BitmapsAutoclearBit) == 0)
            {
                layout = layout with { BitmapsInconsistent = true };
            }
            else if (type == BitmapsExtension && length == BitmapsExtensionLength)
            {
                layout = layout with
                {
                    BitmapCount = BinaryPrimitives.ReadUInt32BigEndian(data),
                    BitmapDirectorySize = BinaryPrimitives.ReadUInt64BigEndian(data[8..]),
                    BitmapDirectoryOffset = BinaryPrimitives.ReadUInt64BigEndian(data[16..]),
                };
            }
            else if (type == CryptoExtension && length == CryptoExtensionLength)
            {
                layout = layout with { CryptoOffset = BinaryPrimitives.ReadUInt64BigEndian(data), CryptoLength = BinaryPrimitives.ReadUInt64BigEndian(data[8..]) };
            }
            position += 8 + ((length + 7L) & ~7L);
        }
        return layout;
    }

    private protected override ValueTask<CheckResult> CheckCoreAsync(BlockDevice device, RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (mode != RepairMode.None)
        {
            throw new QedUnsupportedException(RepairNotSupported);
        }
        // The reader's image device lands later; until then only files are checked (CheckFileAsync).
        throw new QedUnsupportedException(RepairNotSupported);
    }
}
