using System.Runtime.InteropServices;
using Qed.IO;
using Qed.Nbd.Client;

namespace Qed.Cli.Commands.Commit;

/// <summary>Finds the image <c>-b BASE</c> names in a backing chain, as qemu-img commit does (<c>bdrv_find_backing_image</c>).</summary>
/// <remarks>
/// For each image of the chain from the top down, BASE is resolved against that image's directory (unless absolute)
/// and compared with the image's backing file, both with symbolic links and <c>..</c> resolved (<c>realpath</c>); names
/// that do not exist never match. The top image itself is never a base. NBD URIs are compared as written.
/// </remarks>
internal static partial class BaseLookup
{
    /// <summary>The depth (1: the top's backing file) of the layer <paramref name="baseName"/> names, or 0 when no layer below the top matches.</summary>
    public static int FindDepth(BlockDevice top, string baseName)
    {
        int depth = 1;
        for (BlockDevice? layer = top; layer?.Backing is { } backing; layer = backing, depth++)
        {
            if (NbdUri.IsNbdUri(baseName) || NbdUri.IsNbdUri(backing.FileName))
            {
                if (baseName == backing.FileName)
                {
                    return depth;
                }
                continue;
            }
            string candidate = Qed.Backing.BackingChain.Resolve(layer.FileName, baseName);
            if (RealPath(candidate) is { } wanted && RealPath(backing.FileName) is { } actual && wanted == actual)
            {
                return depth;
            }
        }
        return 0;
    }

    /// <summary>The canonical absolute path of an existing file (<c>realpath(3)</c>), or null when it cannot be resolved.</summary>
    internal static string? RealPath(string path)
    {
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            return null;
        }
        nint resolved = NativeRealPath(path, 0);
        if (resolved == 0)
        {
            return null;
        }
        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            NativeFree(resolved);
        }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint NativeRealPath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void NativeFree(nint pointer);
}
