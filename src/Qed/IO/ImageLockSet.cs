using Qed.Formats;
using Qed.Image;

namespace Qed.IO;

/// <summary>What one open file holds and what it refuses to others, in QEMU's terms; <see cref="ImageLock"/> turns it into lock bytes.</summary>
/// <param name="Held">Permissions this user holds: shared locks on bytes 100 + bit.</param>
/// <param name="Refused">Permissions this user refuses to every other user: shared locks on bytes 200 + bit.</param>
/// <remarks>
/// The sets QEMU 7.2 takes (seen in <c>/proc/locks</c>; the tests compare them with QEMU's at test time):
/// <list type="table">
/// <item><term>QED, writable</term><description>holds consistent read, write, resize (100, 101, 103); refuses write, resize (201, 203).</description></item>
/// <item><term>QED, read-only</term><description>holds consistent read (100); refuses write, resize (201, 203): QEMU's QED driver never shares writes to its own file.</description></item>
/// <item><term>raw, writable</term><description>holds consistent read, write (100, 101); refuses nothing.</description></item>
/// <item><term>raw, read-only</term><description>holds consistent read (100); refuses nothing, unless the user wants a stable source (qemu-img convert), which refuses write and resize for the whole chain.</description></item>
/// <item><term>force-share (read-only only)</term><description>holds consistent read (100); refuses nothing, at any depth of the chain.</description></item>
/// <item><term>metadata only (qemu-img info)</term><description>holds nothing; refuses what the format refuses.</description></item>
/// <item><term>create</term><description>holds write, resize (101, 103); refuses resize (203), taken before the file is truncated.</description></item>
/// </list>
/// Backing files are opened read-only with the same options, so they get the read-only set of their own format (except the layer <see cref="ImageOpenOptions.WritableBackingDepth"/> names, which gets the writable set).
/// </remarks>
internal readonly record struct ImageLockSet(ImagePermissions Held, ImagePermissions Refused)
{
    /// <summary>No lock at all.</summary>
    public static ImageLockSet None => default;

    /// <summary>What <c>qemu-img create</c> holds while it truncates and formats a file (and while qed overwrites one).</summary>
    public static ImageLockSet Create => new(ImagePermissions.Write | ImagePermissions.Resize, ImagePermissions.Resize);

    /// <summary>True when the set takes no lock (nothing to take, nothing to test).</summary>
    public bool IsEmpty => Held == ImagePermissions.None && Refused == ImagePermissions.None;

    /// <summary>The set for opening an image of <paramref name="format"/> with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException"><see cref="ImageOpenOptions.ForceShare"/> without <see cref="ImageOpenOptions.ReadOnly"/>.</exception>
    public static ImageLockSet ForOpen(ImageFormat format, ImageOpenOptions options)
    {
        if (options.ForceShare && !options.ReadOnly)
        {
            throw new ArgumentException("ForceShare can only be used with ReadOnly: a writer cannot share its writes.", nameof(options));
        }
        if (!options.Locking)
        {
            return None;
        }
        var held = ImagePermissions.None;
        if (!options.MetadataOnly)
        {
            held |= ImagePermissions.ConsistentRead;
        }
        if (!options.ReadOnly)
        {
            // QED grows its file as it allocates; a raw image keeps its size.
            held |= format.GrowsFile ? ImagePermissions.Write | ImagePermissions.Resize : ImagePermissions.Write;
        }
        var refused = ImagePermissions.None;
        if (!options.ForceShare && (format.RefusesSharedWriters || options.ExcludeWriters))
        {
            refused = ImagePermissions.Write | ImagePermissions.Resize;
        }
        return new ImageLockSet(held, refused);
    }
}
