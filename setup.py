"""Package build: every setting is read from `settings.ini` (edit there, not here)."""
from configparser import ConfigParser
import shlex
import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

required = 'version description keywords author author_email lib_name user branch license status min_python audience language'
for key in required.split(): assert key in cfg, f'settings.ini is missing {key!r}'

statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable']
py_versions = ['3.10', '3.11', '3.12', '3.13']
min_python = cfg['min_python']

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache Software License 2.0',
    classifiers=['Development Status :: ' + statuses[int(cfg['status']) - 1],
                 'Intended Audience :: ' + cfg['audience'],
                 'License :: OSI Approved :: Apache Software License',
                 'Natural Language :: ' + cfg['language']]
                + ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True,
    install_requires=shlex.split(cfg.get('requirements', '')),
    extras_require={'dev': shlex.split(cfg.get('dev_requirements', '')),
                    'lightning': shlex.split(cfg.get('lightning_requirements', '')),  # eb_study.integrations.lightning
                    'hf': shlex.split(cfg.get('hf_requirements', '')),  # eb_study.integrations.hf
                    'tensorboard': shlex.split(cfg.get('tensorboard_requirements', '')),  # eb-study --log tensorboard
                    'ray': shlex.split(cfg.get('ray_requirements', '')),  # eb-study compare --executor ray
                    'slurm': shlex.split(cfg.get('slurm_requirements', '')),  # eb-study compare --executor slurm (submitit)
                    'docs': shlex.split(cfg.get('docs_requirements', ''))},  # the documentation site
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
)
