using Qed.Backing;
using Qed.Check;
using Qed.Image;
using Qed.IO;
using Qed.Tables;

namespace Qed.Formats;

/// <summary>
/// One image format: its name as qemu-img spells it, how its first bytes look, and what the library can do with it
/// (open, create, describe, check). The formats are registered explicitly in <see cref="ImageFormats"/>.
/// </summary>
/// <remarks>
/// A format opens in stages so that a backing chain never recurses through two classes and a failed open writes nothing
/// (<see cref="ChainOpener"/>): <see cref="BeginOpenAsync"/> reads and validates one file and names its backing file; the
/// opener opens the files below, attaches each image's backing device, and only then lets the images write what they
/// write at open. Formats are defined in this library only (the constructor is not public); callers ask a format what
/// it can do instead of testing the type of a device.
/// </remarks>
public abstract class ImageFormat
{
    private protected ImageFormat()
    {
    }

    /// <summary>The name as qemu-img spells it (<c>qed</c>, <c>raw</c>): what <c>-f</c> takes and what <c>info</c> prints.</summary>
    public abstract string Name { get; }

    /// <summary>The name in running text (<c>QED</c>, <c>raw</c>).</summary>
    internal virtual string Title => Name;

    /// <summary>True when <paramref name="head"/>, the first <see cref="ImageFormats.ProbeLength"/> bytes of a file (zero-padded), carry this format's signature.</summary>
    /// <remarks>Raw has no signature: it is what the probe answers when no format recognises the file.</remarks>
    internal abstract bool Recognizes(ReadOnlySpan<byte> head);

    /// <summary>True when the library reads images of this format; false for formats it only recognises, to refuse them clearly.</summary>
    public virtual bool CanOpen => false;

    /// <summary>True when the library writes images of this format (a writable open).</summary>
    public virtual bool CanWrite => false;

    /// <summary>True when <see cref="Create"/> makes new images of this format.</summary>
    public virtual bool CanCreate => false;

    /// <summary>True when images of this format can name a backing file.</summary>
    public virtual bool SupportsBackingFile => false;

    /// <summary>True when writing an image of this format appends to its file (QED allocates clusters at the end), so it cannot live on a fixed-size block device; a writable open takes QEMU's resize permission as well as write.</summary>
    public virtual bool GrowsFile => false;

    /// <summary>True when <see cref="Check"/> runs a consistency check on images of this format.</summary>
    public virtual bool CanCheck => false;

    /// <summary>The options <see cref="Create"/> accepts, in the order qemu-img lists them when it announces a new image.</summary>
    public virtual IReadOnlyList<ImageCreateOption> CreateOptions => [];

    /// <summary>Opens the image at <paramref name="path"/> as this format, with its backing chain unless <see cref="ImageOpenOptions.NoBacking"/>.</summary>
    /// <exception cref="QedException">The file cannot be opened, is not valid in this format, or its backing chain cannot be opened.</exception>
    public BlockDevice Open(string path, ImageOpenOptions? options = null) =>
        ChainOpener.OpenAsync(path, this, options ?? new ImageOpenOptions(), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Open"/>
    public ValueTask<BlockDevice> OpenAsync(string path, ImageOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        ChainOpener.OpenAsync(path, this, options ?? new ImageOpenOptions(), useAsync: true, cancellationToken);

    /// <summary>Creates an empty image at <paramref name="path"/> (an existing file is locked, then replaced).</summary>
    /// <exception cref="QedException">An option is invalid for this format; nothing was written.</exception>
    /// <exception cref="QedUnsupportedException">The library does not create images of this format (<see cref="CanCreate"/>).</exception>
    public void Create(string path, ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        CreateCoreAsync(path, options, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <inheritdoc cref="Create"/>
    public ValueTask CreateAsync(string path, ImageCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return CreateCoreAsync(path, options, useAsync: true, cancellationToken);
    }

    /// <summary>Refuses options this format cannot create an image with, writing nothing (<see cref="Create"/> checks the same first).</summary>
    /// <exception cref="QedException">An option is invalid for this format, with qemu-img's message.</exception>
    public virtual void Validate(ImageCreateOptions options) => ArgumentNullException.ThrowIfNull(options);

    /// <summary>What qemu-img info reports about <paramref name="device"/>, an image of this format.</summary>
    public virtual ImageDescription Describe(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new ImageDescription { Format = Name, VirtualSize = device.Size };
    }

    /// <summary>Checks <paramref name="device"/>, an image of this format, and with <paramref name="mode"/> repairs what can be repaired safely. No other request may use the image meanwhile.</summary>
    /// <exception cref="QedUnsupportedException">The format has no check (<see cref="CanCheck"/>).</exception>
    public CheckResult Check(BlockDevice device, RepairMode mode = RepairMode.None) =>
        CheckCoreAsync(device, mode, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Check"/>
    public ValueTask<CheckResult> CheckAsync(BlockDevice device, RepairMode mode = RepairMode.None, CancellationToken cancellationToken = default) =>
        CheckCoreAsync(device, mode, useAsync: true, cancellationToken);

    /// <summary>
    /// Makes the header of <paramref name="device"/> (an image of this format, open writable) name <paramref name="backingFile"/>
    /// as its backing file, stored as given, or no backing file when it is null or empty; <paramref name="backingFormat"/>
    /// is recorded as far as the format records it (QED: only whether it is <c>raw</c>). Only the header changes, crash-safe:
    /// no data is copied, so the disk reads differently unless the new backing file holds what the old one did. The open
    /// device keeps reading through the backing device it was opened with; open it again to read through the new one.
    /// </summary>
    /// <exception cref="QedUnsupportedException">The format has no backing files, or this image cannot take the name (QED: unknown compatible features set, no room in the header area).</exception>
    /// <exception cref="QedReadOnlyException">The device is open read-only.</exception>
    /// <exception cref="ArgumentException">The name cannot be stored (a NUL byte; QED: 4096 bytes or more).</exception>
    public void ChangeBackingFile(BlockDevice device, string? backingFile, string? backingFormat)
    {
        ArgumentNullException.ThrowIfNull(device);
        ChangeBackingFileCoreAsync(device, backingFile, backingFormat, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <inheritdoc cref="ChangeBackingFile"/>
    public ValueTask ChangeBackingFileAsync(BlockDevice device, string? backingFile, string? backingFormat, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        return ChangeBackingFileCoreAsync(device, backingFile, backingFormat, useAsync: true, cancellationToken);
    }

    /// <summary>Throws what <see cref="ChangeBackingFile"/> would throw for these arguments before writing, writing nothing (to refuse before data is copied).</summary>
    internal virtual void CheckBackingFileChange(BlockDevice device, string? backingFile) => throw NoBackingFiles();

    /// <summary>Changes the backing file; the default refuses.</summary>
    private protected virtual ValueTask ChangeBackingFileCoreAsync(BlockDevice device, string? backingFile, string? backingFormat, bool useAsync, CancellationToken cancellationToken) =>
        throw NoBackingFiles();

    // QEMU's errno text first, so the line reads as qemu-img's.
    private QedUnsupportedException NoBackingFiles() => new($"Operation not supported ({Title} images have no backing file)");

    /// <summary>Warnings about images made with <paramref name="options"/> that QEMU could not open (the image is valid).</summary>
    public virtual IReadOnlyList<string> CompatibilityWarnings(ImageCreateOptions options) => [];

    /// <summary>Guest bytes one second-level table of <paramref name="device"/> maps (QED's L2 tables), or null for formats without two-level tables.</summary>
    internal virtual long? GetL2TableSpan(BlockDevice device) => null;

    /// <summary>
    /// A warning about <paramref name="device"/> as it opened, or null; the CLI prints it after the open. Some are for
    /// opens that read the data only (<paramref name="forData"/>: qcow2's dirty or corrupt bit), others for every open
    /// (qcow2's stale bitmaps, which QEMU reports at every open too).
    /// </summary>
    internal virtual string? OpenWarning(BlockDevice device, bool forData) => null;

    /// <summary>Counters of the table cache of <paramref name="device"/>, or null when the format has none.</summary>
    public virtual L2CacheStatistics? GetCacheStatistics(BlockDevice device) => null;

    /// <inheritdoc />
    public override string ToString() => Name;

    /// <summary>True when an open of this format refuses other writers and resizers, read-only too (QEMU's QED and qcow2 drivers do), rather than sharing them (raw).</summary>
    internal virtual bool RefusesSharedWriters => false;

    /// <summary>
    /// First stage of an open: reads and validates <paramref name="file"/> (already locked) without writing anything and
    /// without opening a backing file. The caller owns <paramref name="file"/> until the result is completed.
    /// </summary>
    internal virtual ValueTask<ImageOpening> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        throw ImageFormats.NotReadable(file.Path, this);

    /// <summary>Creates the image; the default refuses.</summary>
    private protected virtual ValueTask CreateCoreAsync(string path, ImageCreateOptions options, bool useAsync, CancellationToken cancellationToken) =>
        throw new QedUnsupportedException($"Creating {Title} images is not supported");

    /// <summary>Runs the check; the default refuses.</summary>
    private protected virtual ValueTask<CheckResult> CheckCoreAsync(BlockDevice device, RepairMode mode, bool useAsync, CancellationToken cancellationToken) =>
        throw new QedUnsupportedException($"{Title} images have no consistency check");
}
