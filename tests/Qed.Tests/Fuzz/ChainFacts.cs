using System.Buffers.Binary;
using System.Text;

namespace Qed.Tests.Fuzz;

/// <summary>One image of a backing chain as the relation sees it: its header, and whether it is opened as QED (else raw).</summary>
internal readonly record struct ChainLayer(string Path, HeaderFacts Header, bool IsQed);

/// <summary>
/// The backing chain of an image, followed from the bytes on disk independently of the engine: names resolved against
/// the naming image's directory, the no-probe bit meaning raw, a probed file being QED when it has the magic.
/// </summary>
internal sealed record ChainFacts(IReadOnlyList<ChainLayer> Layers, bool RepeatsAFile)
{
    private const int MaxDepth = 8;

    /// <summary>The top image, opened as QED (the tools are given <c>-f qed</c>).</summary>
    public HeaderFacts Top => Layers[0].Header;

    /// <summary>The layers opened as QED, each of which QEMU validates on open.</summary>
    public IEnumerable<HeaderFacts> QedHeaders => Layers.Where(l => l.IsQed).Select(l => l.Header);

    /// <summary>Follows the chain from <paramref name="top"/> as far as the names lead to files (stopping where an open would fail anyway).</summary>
    public static ChainFacts Read(string top)
    {
        var layers = new List<ChainLayer>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string path = top;
        bool? qed = true;
        for (int depth = 0; depth < MaxDepth; depth++)
        {
            if (!seen.Add(System.IO.Path.GetFullPath(path)))
            {
                return new ChainFacts(layers, RepeatsAFile: true);
            }
            if (!File.Exists(path))
            {
                break;
            }
            byte[] bytes = File.ReadAllBytes(path);
            var header = HeaderFacts.Read(bytes);
            bool isQed = qed ?? header.HasMagic;
            layers.Add(new ChainLayer(path, header, isQed));
            if (!isQed || bytes.Length < 64)
            {
                break;
            }
            ulong features = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(16));
            uint nameOffset = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(56));
            uint nameLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(60));
            // An empty name means no backing file; a name outside the file cannot be read by either tool.
            if ((features & 1) == 0 || nameLength == 0 || (long)nameOffset + nameLength > bytes.Length)
            {
                break;
            }
            // QEMU reads the name as a C string: up to the first NUL byte; empty means no backing file.
            string name = Encoding.UTF8.GetString(bytes, (int)nameOffset, (int)nameLength).Split('\0')[0];
            if (name.Length == 0)
            {
                break;
            }
            path = System.IO.Path.IsPathRooted(name) ? name : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path)!, name);
            qed = (features & 4) != 0 ? false : null;
        }
        return new ChainFacts(layers, RepeatsAFile: false);
    }
}
