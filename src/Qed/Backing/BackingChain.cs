using Qed.Image;
using Qed.Nbd.Client;

namespace Qed.Backing;

/// <summary>The files of one backing chain opened so far: refuses a file that is already in it (a loop) and chains deeper than the limit, and resolves relative names.</summary>
internal sealed class BackingChain
{
    private readonly HashSet<string> _visited;
    private readonly int _depth;

    private BackingChain(HashSet<string> visited, int depth)
    {
        _visited = visited;
        _depth = depth;
    }

    /// <summary>A chain whose top image is <paramref name="topPath"/>.</summary>
    public static BackingChain Start(string topPath) => new(new HashSet<string>(StringComparer.Ordinal) { Key(topPath) }, 0);

    /// <summary>Resolves a backing name as QEMU does: relative names against the directory of the image that names them; NBD URIs are not file names and stay as they are.</summary>
    public static string Resolve(string imagePath, string backingName)
    {
        if (Path.IsPathRooted(backingName) || NbdUri.IsNbdUri(backingName))
        {
            return backingName;
        }
        string? directory = Path.GetDirectoryName(imagePath);
        return string.IsNullOrEmpty(directory) ? backingName : Path.Combine(directory, backingName);
    }

    /// <summary>The chain one level further down, at the backing file <paramref name="path"/> (as resolved).</summary>
    /// <exception cref="QedBackingFileException">The name holds a NUL byte, the file is already in the chain, or the chain would be deeper than <see cref="ImageOpenOptions.MaxBackingDepth"/>.</exception>
    public BackingChain Enter(string path, ImageOpenOptions options)
    {
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new QedBackingFileException($"Could not open backing file: its name '{path.Replace("\0", "\\0", StringComparison.Ordinal)}' contains a NUL byte");
        }
        string full = Key(path);
        if (_visited.Contains(full))
        {
            throw new QedBackingFileException($"Backing file '{path}' creates an infinite loop.");
        }
        if (_depth + 1 > options.MaxBackingDepth)
        {
            throw new QedBackingFileException($"Backing chain is deeper than {options.MaxBackingDepth} images at '{path}'");
        }
        return new BackingChain(new HashSet<string>(_visited, StringComparer.Ordinal) { full }, _depth + 1);
    }

    /// <summary>What identifies a file of the chain: its full path, or an NBD URI as written.</summary>
    private static string Key(string path) => NbdUri.IsNbdUri(path) ? path : Path.GetFullPath(path);
}
