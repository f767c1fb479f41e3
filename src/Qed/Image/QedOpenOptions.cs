namespace Qed.Image;

/// <summary>Options for opening an image.</summary>
public sealed record QedOpenOptions
{
    /// <summary>Default capacity of the L2 table cache in bytes.</summary>
    public const long DefaultL2CacheSize = 32L * 1024 * 1024;

    /// <summary>Open without write access; nothing on disk changes.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Bytes of L2 tables to keep cached (at least one table is always kept).</summary>
    public long L2CacheSize { get; init; } = DefaultL2CacheSize;

    /// <summary>Default size of one cached piece of an L2 table, in bytes.</summary>
    public const int DefaultL2SliceSize = 4096;

    /// <summary>Bytes of an L2 table cached as one unit (a power of two from 512; capped at the table size). A miss reads only this much.</summary>
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

    /// <summary>Do not open the backing chain (for info or rebase -u on an image whose backing file is missing).</summary>
    public bool NoBacking { get; init; }

    /// <summary>Do not run the automatic check-and-repair that a writable open of an image with the need-check bit does (for <c>qed check</c>, which runs its own).</summary>
    public bool SkipCheckOnOpen { get; init; }

    /// <summary>Deepest backing chain accepted before the open fails.</summary>
    public int MaxBackingDepth { get; init; } = 64;
}
