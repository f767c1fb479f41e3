namespace Qed.Cli.Native;

/// <summary>What a path names once symbolic links are followed: convert replaces regular files but writes devices in place.</summary>
internal enum FileKind
{
    /// <summary>Nothing exists at the path.</summary>
    Missing,

    /// <summary>A regular file.</summary>
    Regular,

    /// <summary>A directory.</summary>
    Directory,

    /// <summary>A block or character device (a disk, <c>/dev/null</c>).</summary>
    Device,

    /// <summary>A FIFO or socket: neither replaceable as a file nor writable at offsets.</summary>
    Other,
}
