using Qed.Image;
using Qed.IO;

namespace Qed.Formats.Raw;

/// <summary>Raw disks: the file's bytes are the disk. No signature: a file is raw when no other format recognises it.</summary>
internal sealed class RawFormat : ImageFormat
{
    private static readonly ImageCreateOption[] s_createOptions =
    [
        new(ImageCreateOption.SizeName, ImageCreateOptionKind.Size, "Virtual disk size"),
    ];

    /// <summary>qemu-img rounds raw images up to whole sectors when it reports and copies them.</summary>
    private const long SectorSize = 512;

    /// <inheritdoc />
    public override string Name => "raw";

    /// <inheritdoc />
    internal override bool Recognizes(ReadOnlySpan<byte> head) => false;

    /// <inheritdoc />
    public override bool CanOpen => true;

    /// <inheritdoc />
    public override bool CanWrite => true;

    /// <inheritdoc />
    public override bool CanCreate => true;

    /// <inheritdoc />
    // A read-only view: the array itself could be cast back and changed by a caller.
    public override IReadOnlyList<ImageCreateOption> CreateOptions { get; } = Array.AsReadOnly(s_createOptions);

    /// <inheritdoc />
    public override ImageDescription Describe(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        // A 6-byte file is a 512-byte disk to QEMU.
        long size = device.Size;
        long rounded = size > long.MaxValue - (SectorSize - 1) ? long.MaxValue & ~(SectorSize - 1) : (size + SectorSize - 1) & ~(SectorSize - 1);
        return new ImageDescription { Format = Name, VirtualSize = rounded };
    }

    internal override ValueTask<ImageOpening> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        new(new Opening(new RawImage(file)));

    /// <inheritdoc />
    public override void Validate(ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.BackingFile is not null)
        {
            throw new QedUnsupportedException($"Backing file not supported for file format '{Name}'");
        }
        if (options.Settings.Count > 0)
        {
            throw new QedUnsupportedException($"Invalid parameter '{options.Settings.Keys.First()}'");
        }
        if (options.Size < 0 || options.Size > long.MaxValue - (SectorSize - 1))
        {
            throw new QedFormatException($"Invalid image size {options.Size}");
        }
    }

    private protected override ValueTask CreateCoreAsync(string path, ImageCreateOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        Validate(options);
        RawImage.Create(path, (options.Size + SectorSize - 1) & ~(SectorSize - 1)).Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed class Opening(RawImage device) : ImageOpening
    {
        public override BlockDevice Device => device;
    }
}
