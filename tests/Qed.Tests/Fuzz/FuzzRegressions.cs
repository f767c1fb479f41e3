using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace Qed.Tests.Fuzz;

/// <summary>Inputs that once failed a fuzz run, kept in <c>Fuzz/Regressions</c> of the source tree and replayed on every run.</summary>
internal static class FuzzRegressions
{
    /// <summary>The saved inputs' file names with <paramref name="extension"/> (QED images by default), sorted.</summary>
    public static IEnumerable<string> Names(string extension = ".qed") =>
        System.IO.Directory.EnumerateFiles(Folder(), "*" + extension).Select(Path.GetFileName).Order()!;

    /// <summary>The bytes of a saved input.</summary>
    public static byte[] Read(string name) => File.ReadAllBytes(Path.Combine(Folder(), name));

    /// <summary>Saves a failing input under a name derived from its content (best effort: the source tree may be read-only) and returns that name.</summary>
    public static string Save(byte[] input, string extension = ".qed")
    {
        string name = Convert.ToHexStringLower(SHA256.HashData(input))[..16] + extension;
        try
        {
            File.WriteAllBytes(Path.Combine(Folder(), name), input);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return name;
    }

    private static string Folder([CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "Regressions");
}
