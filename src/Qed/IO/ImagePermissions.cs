namespace Qed.IO;

/// <summary>The permissions of QEMU's block layer that its image locks stand for; the value of each is 1 &lt;&lt; its bit number.</summary>
/// <remarks>
/// QEMU marks a permission a user holds with a shared lock on byte 100 + bit of the image file, and a permission it
/// refuses to everyone else with a shared lock on byte 200 + bit (<see cref="ImageLock"/>). The bit numbers are
/// QEMU's <c>BLK_PERM_*</c> order, so they must never change.
/// </remarks>
[Flags]
internal enum ImagePermissions
{
    /// <summary>Nothing.</summary>
    None = 0,

    /// <summary>Reads that see consistent data (bit 0, "consistent read").</summary>
    ConsistentRead = 1 << 0,

    /// <summary>Writes that change what is read (bit 1, "write").</summary>
    Write = 1 << 1,

    /// <summary>Writes that leave the visible data as it was (bit 2, "write unchanged"); qed neither holds nor refuses it.</summary>
    WriteUnchanged = 1 << 2,

    /// <summary>Changing the file's length (bit 3, "resize").</summary>
    Resize = 1 << 3,
}

/// <summary>Names and bit numbers of <see cref="ImagePermissions"/>, as QEMU prints them.</summary>
internal static class ImagePermissionNames
{
    /// <summary>The permissions in bit order, the order in which QEMU locks and tests them.</summary>
    public static ReadOnlySpan<ImagePermissions> InBitOrder =>
        [ImagePermissions.ConsistentRead, ImagePermissions.Write, ImagePermissions.WriteUnchanged, ImagePermissions.Resize];

    /// <summary>QEMU's name of one permission (<c>bdrv_perm_names</c>).</summary>
    public static string Name(ImagePermissions permission) => permission switch
    {
        ImagePermissions.ConsistentRead => "consistent read",
        ImagePermissions.Write => "write",
        ImagePermissions.WriteUnchanged => "write unchanged",
        ImagePermissions.Resize => "resize",
        _ => throw new ArgumentOutOfRangeException(nameof(permission), permission, "Not a single permission."),
    };

    /// <summary>The bit number of one permission (its lock bytes are 100 + bit and 200 + bit).</summary>
    public static int Bit(ImagePermissions permission) => System.Numerics.BitOperations.TrailingZeroCount((uint)permission);
}
