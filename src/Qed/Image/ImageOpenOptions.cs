namespace Qed.Image;

/// <summary>Options for opening an image of any format (<see cref="DiskImage"/>, <see cref="Formats.ImageFormat.Open"/>); the L2 cache settings apply to QED images only.</summary>
public sealed record ImageOpenOptions
{
    /// <summary>Default capacity of the L2 table cache in bytes.</summary>
    internal const long DefaultL2CacheSize = 32L * 1024 * 1024;

    /// <summary>Open without write access; nothing on disk changes.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Bytes of L2 tables to keep cached (default 32 MiB; at least one table is always kept).</summary>
    public long L2CacheSize { get; init; } = DefaultL2CacheSize;

    /// <summary>Default size of one cached piece of an L2 table, in bytes.</summary>
    internal const int DefaultL2SliceSize = 4096;

    /// <summary>Bytes of an L2 table cached as one unit (a power of two from 512, default 4096; capped at the table size). A miss reads only this much.</summary>
    public int L2SliceSize
    {
        get => _l2SliceSize;
        init
        {
            if (value < 512 || !System.Numerics.BitOperations.IsPow2(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The L2 slice size must be a power of two of at least 512 bytes.");
            }
            _l2SliceSize = value;
        }
    }

    private readonly int _l2SliceSize = DefaultL2SliceSize;

    /// <summary>Do not open the backing chain (to describe or re-point an image whose backing file is missing); reads of unallocated clusters then return zeros, and a write that needs backing data fails with <see cref="QedBackingFileException"/>.</summary>
    public bool NoBacking { get; init; }

    /// <summary>Do not run the automatic check-and-repair that a writable open of an image with the need-check bit does (for a caller that runs <see cref="Formats.ImageFormat.Check"/> itself and wants to see the damage first).</summary>
    public bool SkipCheckOnOpen { get; init; }

    /// <summary>Deepest backing chain accepted before the open fails.</summary>
    public int MaxBackingDepth { get; init; } = 64;

    /// <summary>
    /// Take the byte-range locks QEMU takes (default true), so that QEMU and this library see each other: the open fails with a
    /// <see cref="QedLockException"/> when another user excludes it (a writer of an image that is open elsewhere as
    /// QED; a reader of a QED image that someone writes), and while it lasts, others are refused alike. False opens
    /// without taking or testing any lock, like QEMU's <c>file.locking=off</c>: nothing then stops two writers from
    /// corrupting the image.
    /// </summary>
    /// <remarks>
    /// Applies to the backing chain too. The locks are Linux open file description locks, released when the image is
    /// disposed; where the kernel lacks them (or on another system) nothing is locked, as QEMU's <c>locking=auto</c>
    /// does. A file system that refuses them makes the open fail (<c>Failed to lock byte 100: ...</c>), as in QEMU;
    /// then only <c>Locking = false</c> opens the image.
    /// </remarks>
    public bool Locking { get; init; } = true;

    /// <summary>
    /// Share every permission with other users, like <c>qemu-img -U</c> (<c>force-share=on</c>): the image (and its
    /// backing chain) opens even while a virtual machine writes it, and takes only the lock that says it reads. What
    /// it reads may then be inconsistent. Only for <see cref="ReadOnly"/> opens.
    /// </summary>
    public bool ForceShare { get; init; }

    /// <summary>Only the metadata is looked at (like <c>qemu-img info</c>): the "consistent read" permission is not taken.</summary>
    internal bool MetadataOnly { get; init; }

    /// <summary>Write-zeroes turns unallocated QED clusters into zero clusters even when the image has no backing file, so the range still reads as zeros once the image is given one (rebase).</summary>
    internal bool ZeroClustersWithoutBacking { get; init; }

    /// <summary>Refuse writers of every file of the chain, raw files included, as <c>qemu-img convert</c> does for its source (QED files always refuse them).</summary>
    internal bool ExcludeWriters { get; init; }

    /// <summary>
    /// The one backing file opened writable, by its depth in the chain (1: the top image's backing file, 2: the backing
    /// file of that, ...), as <c>commit</c> needs for its base; 0 (the default): every backing file is read-only. That layer
    /// takes a writer's locks (an image in use elsewhere is refused as for any writable open), is repaired on open when
    /// its need-check bit is set, and is written by the caller through <see cref="IO.BlockDevice.Backing"/>; the images
    /// above it read through it as through any backing file. The open fails when the chain is not that deep.
    /// </summary>
    internal int WritableBackingDepth { get; init; }

    /// <summary>Wraps each file of the chain once it is open and locked, before its format reads it (tests inject faults there); null: none.</summary>
    internal Func<IO.FileAccessor, IO.FileAccessor>? FileWrapper { get; init; }
}
