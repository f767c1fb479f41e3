using System.Diagnostics;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Packaging;

/// <summary>
/// Packs the library (<c>Qed</c>) and the tool (<c>Qed.Tool</c>) once for <see cref="PackageTests"/>, into a temporary
/// directory that also serves as the only package source of everything the tests install from it.
/// </summary>
/// <remarks>
/// Nothing touches the repository's bin/obj (the AOT build of ./qed lives there): pack writes its build output under
/// <c>--artifacts-path</c>. Installs use their own NuGet packages folder, so an earlier run's cached 0.8.0 can never
/// stand in for this one, and a nuget.config with the local directory alone, so they need no network.
/// </remarks>
public sealed class PackedPackages : IDisposable
{
    private readonly TempDirectory _dir = new();

    public PackedPackages()
    {
        RepositoryRoot = FindRepositoryRoot();
        Directory.CreateDirectory(Source);
        var clock = Stopwatch.StartNew();
        // The tool first: it builds the library too, so packing the library afterwards only packs.
        foreach (string project in new[] { "src/Qed.Cli/Qed.Cli.csproj", "src/Qed/Qed.csproj" })
        {
            Dotnet.Ok(RepositoryRoot, null, "pack", Path.Combine(RepositoryRoot, project), "-c", "Release", "-o", Source,
                "--artifacts-path", _dir.File("artifacts"), "--nologo", "-v", "quiet", "--disable-build-servers");
        }
        PackTime = clock.Elapsed;
        string library = Directory.GetFiles(Source, "Qed.*.nupkg").Single(p => !Path.GetFileName(p).StartsWith("Qed.Tool.", StringComparison.Ordinal));
        Version = Path.GetFileNameWithoutExtension(library)["Qed.".Length..];
        LibraryPackage = library;
        ToolPackage = Path.Combine(Source, $"Qed.Tool.{Version}.nupkg");
        CopyDependencies(library);
        File.WriteAllText(NuGetConfig,
            $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{Source}" />
              </packageSources>
            </configuration>
            """);
    }

    /// <summary>
    /// Puts the packages the library depends on (ZstdSharp.Port) into <see cref="Source"/>, from the NuGet packages
    /// folder the repository's own restore filled: a consumer's restore then finds everything without the network.
    /// </summary>
    private void CopyDependencies(string libraryPackage)
    {
        using var zip = System.IO.Compression.ZipFile.OpenRead(libraryPackage);
        using var stream = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
        var dependencies = System.Xml.Linq.XDocument.Load(stream).Descendants().Where(e => e.Name.LocalName == "dependency");
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder
            ? folder
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var dependency in dependencies)
        {
            string id = dependency.Attribute("id")!.Value.ToLowerInvariant();
            string version = dependency.Attribute("version")!.Value.Trim('[', ']').ToLowerInvariant();
            File.Copy(Path.Combine(packages, id, version, $"{id}.{version}.nupkg"), Path.Combine(Source, $"{id}.{version}.nupkg"));
        }
    }

    /// <summary>The checkout the test binary was built from (the directory holding qed.sln).</summary>
    public string RepositoryRoot { get; }

    /// <summary>The directory holding both .nupkg files: the package source.</summary>
    public string Source => _dir.File("source");

    /// <summary>A nuget.config naming <see cref="Source"/> as the only source.</summary>
    public string NuGetConfig => _dir.File("nuget.config");

    /// <summary>The NuGet packages folder of every install the tests make.</summary>
    public string PackagesFolder => _dir.File("packages");

    /// <summary>The package version, from the library package's file name.</summary>
    public string Version { get; }

    public string LibraryPackage { get; }

    public string ToolPackage { get; }

    public TimeSpan PackTime { get; }

    /// <summary>A fresh directory inside the fixture's.</summary>
    public string NewDirectory(string name)
    {
        string path = _dir.File(name);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>The environment of installs and builds against <see cref="Source"/>.</summary>
    public Dictionary<string, string> InstallEnvironment() => new() { ["NUGET_PACKAGES"] = PackagesFolder };

    public void Dispose() => _dir.Dispose();

    /// <summary>The directory holding qed.sln above the test binary.</summary>
    internal static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "qed.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"No qed.sln above {AppContext.BaseDirectory}: the packaging tests run from a build inside the repository");
    }
}
