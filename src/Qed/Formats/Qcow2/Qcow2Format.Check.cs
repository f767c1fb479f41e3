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

    /// <inheritdoc />
    public override bool CanCheck => true;

    /// <summary>
    /// Checks the qcow2 image in <paramref name="file"/> (open and locked by the caller): the header is read again with the
    /// check's open rules (rules 14, 17, 18 and 28 are the check's own findings), then <see cref="Qcow2Checker"/> runs.
    /// </summary>
    /// <exception cref="QedException">The header breaks an open rule (QEMU's message), or the file cannot be read.</exception>
    internal static async ValueTask<CheckResult> CheckFileAsync(FileAccessor file, bool useAsync, CancellationToken cancellationToken, Action<CheckMessage>? report = null)
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
        var layout = Qcow2CheckLayout.From(header, Qcow2Extensions.Parse(cluster0, header));
        return await Qcow2Checker.CheckAsync(file, header, layout, report, useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Checks an open image; the open already applied the header and extension rules (for a check open: without rules 14, 17, 18 and 28).</summary>
    private protected override ValueTask<CheckResult> CheckCoreAsync(BlockDevice device, RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (mode != RepairMode.None)
        {
            throw new QedUnsupportedException(RepairNotSupported);
        }
        return CheckAsync(device, report: null, useAsync, cancellationToken);
    }

    /// <summary>
    /// Checks <paramref name="device"/> (a qcow2 image) without repair, handing each message to <paramref name="report"/>
    /// as it is found rather than collecting them (a damaged image can yield millions of lines).
    /// </summary>
    internal CheckResult Check(BlockDevice device, Action<CheckMessage> report) =>
        CheckAsync(device, report, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    private ValueTask<CheckResult> CheckAsync(BlockDevice device, Action<CheckMessage>? report, bool useAsync, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        var image = device as Qcow2Image ?? throw new ArgumentException($"'{device.FileName}' is a {device.FormatName} image, not {Name}.", nameof(device));
        return Qcow2Checker.CheckAsync(image.File, image.Header, Qcow2CheckLayout.From(image.Header, image.Extensions), report, useAsync, cancellationToken);
    }
}
